package controlpoint

import (
	"fmt"
	"reflect"

	"github.com/fluxgate/fluxgate/policies"
)

// A flow-control kind builds itself: each kind's file registers, next to
// its constructor, how the engine turns its spec (a type of package
// policies, registered there with policies.RegisterComponent) into a
// component and which selectors pick its flows. A new kind is then its
// policies file and its controlpoint file; the engine switches on nothing.
// Circuits find a kind's signal inputs through policies.Actuator.

// kindBuilder builds the component of one spec with the engine's options.
type kindBuilder func(info componentInfo, spec any, opts *Options) (flowComponent, []policies.Selector, error)

var kinds = map[reflect.Type]kindBuilder{} // written by init functions only

// registerKind makes specs of type *T flow-control components of the
// engine. It panics when *T is registered twice, as at init a programming
// error.
func registerKind[T any](build func(info componentInfo, spec *T, opts *Options) (flowComponent, []policies.Selector, error)) {
	t := reflect.TypeFor[*T]()
	if _, dup := kinds[t]; dup {
		panic(fmt.Sprintf("controlpoint: flow-control kind %v registered twice", t))
	}
	kinds[t] = func(info componentInfo, spec any, opts *Options) (flowComponent, []policies.Selector, error) {
		return build(info, spec.(*T), opts)
	}
}

// buildKind builds the component of spec, or reports that spec is not a
// flow-control kind (a circuit component: the circuit runs it).
func buildKind(info componentInfo, spec any, opts *Options) (fc flowComponent, sels []policies.Selector, ok bool, err error) {
	b, ok := kinds[reflect.TypeOf(spec)]
	if !ok {
		return nil, nil, false, nil
	}
	fc, sels, err = b(info, spec, opts)
	return fc, sels, true, err
}

// IsKind reports whether spec, a component spec of package policies, is
// a flow-control kind the engine builds. An actuator spec that is not
// (policies.Actuator) belongs to another part of the program.
func IsKind(spec any) bool {
	_, ok := kinds[reflect.TypeOf(spec)]
	return ok
}
