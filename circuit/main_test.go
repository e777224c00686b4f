package circuit

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine (a query.promql
// worker, say) outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
