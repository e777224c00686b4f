package policies

import (
	"errors"
	"fmt"
)

// testKind is a component kind registered only by the tests.
type testKind struct {
	Signal string  `yaml:"signal" required:"true"`
	Gain   float64 `yaml:"gain"`
}

func (k *testKind) Validate() []error {
	var errs []error
	if k.Gain < 0 {
		errs = append(errs, fmt.Errorf("gain must not be negative, got %v", k.Gain))
	}
	if k.Signal == "forbidden" {
		errs = append(errs, errors.New("signal name is forbidden"))
	}
	return errs
}

// testNested is a dotted kind, written nested.
type testNested struct {
	Signal string `yaml:"signal"`
}

func init() {
	RegisterComponent("test_kind", func() any { return &testKind{Gain: 1} })
	RegisterComponent("test_group.nested", func() any { return &testNested{} })
}
