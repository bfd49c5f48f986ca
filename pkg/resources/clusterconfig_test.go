package resources

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestClusterConfigParamsUseProductionRaftTimingByDefault(t *testing.T) {
	c := testCluster()
	assert.Equal(t, int32(1), ClusterConfigParams(c, ClusterConfigInputs{}).PerformanceMultiplier,
		"an unset spec.raft.performanceMultiplier renders 1, not OpenBao's default of 5")
	c.Spec.Raft.PerformanceMultiplier = 4
	assert.Equal(t, int32(4), ClusterConfigParams(c, ClusterConfigInputs{}).PerformanceMultiplier)
}
