// Uses the caches of FluxNinja Aperture's JavaScript SDK, unmodified,
// against the agent at AGENT, and a flow in ramp mode; prints what the
// SDK saw as one JSON line for test/aperture to read.
//
//   AGENT=127.0.0.1:8081 node cache.mjs
import grpc from "@grpc/grpc-js";
import { ApertureClient } from "@fluxninja/aperture-js";

const client = new ApertureClient({
  address: process.env.AGENT,
  channelCredentials: grpc.credentials.createInsecure(),
});
const opts = { grpcCallOptions: { deadline: Date.now() + 5000 } };
const start = (params) =>
  client.startFlow("ingress", { labels: { user: "cache" }, resultCacheKey: "answer", globalCacheKeys: ["shared"], ...params, ...opts });
const seen = (flow) => ({
  result: flow.resultCache().getLookupStatus(),
  resultValue: flow.resultCache().getValue() ? Buffer.from(flow.resultCache().getValue()).toString() : null,
  global: flow.globalCache("shared").getLookupStatus(),
  globalValue: flow.globalCache("shared").getValue() ? Buffer.from(flow.globalCache("shared").getValue()).toString() : null,
  error: flow.error() ? String(flow.error()) : null,
});
const err = (r) => (r.getError() ? String(r.getError()) : null);

const out = {};
let flow = await start({});
out.first = seen(flow);
out.setResult = err(await flow.setResultCache({ value: Buffer.from("42"), ttl: { seconds: 600, nanos: 0 } }));
out.setGlobal = err(await flow.setGlobalCache("shared", { value: Buffer.from("hello"), ttl: { seconds: 600, nanos: 0 } }));
flow.end();

flow = await start({});
out.second = seen(flow);
out.deleteResult = err(await flow.deleteResultCache());
flow.end();

flow = await start({});
out.third = seen(flow);
flow.end();

flow = await client.startFlow("ingress", { labels: { user: "ramp" }, rampMode: true, ...opts });
out.ramp = { shouldRun: flow.shouldRun(), rejectReason: flow.checkResponse() ? flow.checkResponse().rejectReason : null };
flow.end();

try {
  await client.tracerProvider.forceFlush();
} catch {}
client.shutdown();
console.log(JSON.stringify(out));
