// Runs flows through FluxNinja Aperture's JavaScript SDK, unmodified,
// against the agent at AGENT (host:port of its gRPC port), and prints what
// the SDK decided as one JSON line. test/aperture starts the agent and
// reads the line.
//
//   AGENT=127.0.0.1:8081 CONTROL_POINT=ingress FLOWS=5 LABELS='{"user":"alice"}' node flows.mjs
import grpc from "@grpc/grpc-js";
import { ApertureClient } from "@fluxninja/aperture-js";

const address = process.env.AGENT;
const controlPoint = process.env.CONTROL_POINT || "ingress";
const flows = Number(process.env.FLOWS || "5");
const labels = JSON.parse(process.env.LABELS || "{}");

const client = new ApertureClient({
  address,
  apiKey: process.env.API_KEY || undefined,
  channelCredentials: grpc.credentials.createInsecure(),
});

const out = { accepted: 0, rejected: 0, errors: [], exportErrors: [], decisions: [] };
for (let i = 0; i < flows; i++) {
  const flow = await client.startFlow(controlPoint, {
    labels,
    grpcCallOptions: { deadline: Date.now() + 5000 },
  });
  if (flow.error()) {
    out.errors.push(String(flow.error()));
  }
  if (flow.shouldRun()) {
    out.accepted++;
  } else {
    out.rejected++;
  }
  const r = flow.checkResponse();
  out.decisions.push(r ? { decisionType: r.decisionType, rejectReason: r.rejectReason, fluxMeters: (r.fluxMeterInfos || []).map((m) => m.fluxMeterName) } : null);
  flow.end();
}
// Spans leave in batches: flush them before the client shuts down.
try {
  await client.tracerProvider.forceFlush();
} catch (err) {
  for (const e of [].concat(err)) out.exportErrors.push(String(e));
}
client.shutdown();
console.log(JSON.stringify(out));
