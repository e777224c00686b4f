package kubernetes

import (
	"testing"

	"github.com/fluxgate/fluxgate/test/kubernetes/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }
