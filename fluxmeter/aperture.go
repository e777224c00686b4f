package fluxmeter

import (
	"encoding/json"
	"strings"
)

// Span attributes of flows that FluxNinja Aperture's SDKs report: they
// check with Aperture's API (which the agent serves) and export each flow
// as a span carrying the check response as JSON, the flow's status and
// its timestamps in Unix milliseconds. The processor reads the control
// point, the flux meters and the decision from the response, a status of
// "Error" as a failed flow, and the workload duration (workload_duration_ms)
// as the end minus the workload's start.
const (
	AttrApertureCheckResponse = "aperture.check_response"
	AttrApertureFlowStatus    = "aperture.flow.status"
	AttrApertureFlowStart     = "aperture.flow_start_timestamp_ms"
	AttrApertureWorkloadStart = "aperture.workload_start_timestamp_ms"
	AttrApertureFlowEnd       = "aperture.flow_end_timestamp_ms"
)

// apertureResponse is what the processor reads of an Aperture check
// response: protobuf JSON, with the field names in lowerCamelCase (as
// protojson and protobuf.js write them) or as in the .proto, and the
// decision as the enum's name or number.
type apertureResponse struct {
	ControlPoint      string            `json:"controlPoint"`
	ControlPointProto string            `json:"control_point"`
	DecisionType      json.RawMessage   `json:"decisionType"`
	DecisionTypeProto json.RawMessage   `json:"decision_type"`
	FluxMeterInfos    []apertureMeterID `json:"fluxMeterInfos"`
	FluxMeterProto    []apertureMeterID `json:"flux_meter_infos"`
}

type apertureMeterID struct {
	Name      string `json:"fluxMeterName"`
	NameProto string `json:"flux_meter_name"`
}

// applyAperture fills what a FluxGate span says in its own attributes from
// an Aperture check response; FluxGate's attributes win. A response that
// is not JSON is ignored (the span then has no control point and is
// refused as any other).
func (v *spanView) applyAperture() {
	if v.apertureResponse == "" {
		return
	}
	var r apertureResponse
	if err := json.Unmarshal([]byte(v.apertureResponse), &r); err != nil {
		return
	}
	if v.controlPoint == "" {
		v.controlPoint = r.ControlPoint
		if v.controlPoint == "" {
			v.controlPoint = r.ControlPointProto
		}
	}
	if !v.hasMeters {
		for _, m := range append(r.FluxMeterInfos, r.FluxMeterProto...) {
			name := m.Name
			if name == "" {
				name = m.NameProto
			}
			if name != "" {
				v.meterNames = append(v.meterNames, name)
			}
		}
		v.hasMeters = len(v.meterNames) > 0
	}
	dt := r.DecisionType
	if len(dt) == 0 {
		dt = r.DecisionTypeProto
	}
	if d := strings.Trim(string(dt), `"`); d == "1" || d == "DECISION_TYPE_REJECTED" {
		v.rejected = true
	}
}
