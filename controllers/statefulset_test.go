package controllers

import (
	"testing"

	"github.com/stretchr/testify/assert"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade/bluegreen"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade/rolling"
)

// What the controller applies to the active StatefulSet's template and the client Service
// comes from the strategy of the upgrade in flight, never from a test of its name.
func TestWorkloadOfEachStrategy(t *testing.T) {
	const running, target = "quay.io/openbao/openbao:2.6.2", "quay.io/openbao/openbao:2.7.2"
	m := &upgrade.Manager{Strategies: upgrade.Strategies{
		openbaov1alpha1.RollingUpgrade:   rolling.Strategy{},
		openbaov1alpha1.BlueGreenUpgrade: bluegreen.Strategy{},
	}}
	cluster := func(strategy openbaov1alpha1.UpgradeStrategyType, active string, bg *openbaov1alpha1.BlueGreenStatus) *openbaov1alpha1.OpenBaoCluster {
		c := &openbaov1alpha1.OpenBaoCluster{}
		c.Name = "bao"
		c.Status.CurrentImage, c.Status.StatefulSet = running, active
		if strategy != "" {
			c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{Strategy: strategy, ToImage: target, BlueGreen: bg}
		}
		return c
	}
	green := &openbaov1alpha1.BlueGreenStatus{BlueStatefulSet: "bao", GreenStatefulSet: "bao-1a2b3c4d"}
	cutOver := &openbaov1alpha1.BlueGreenStatus{BlueStatefulSet: "bao", GreenStatefulSet: "bao-1a2b3c4d", ServingStatefulSet: "bao-1a2b3c4d"}
	for name, tc := range map[string]struct {
		c    *openbaov1alpha1.OpenBaoCluster
		want upgrade.Workload
	}{
		"no upgrade":                   {cluster("", "", nil), upgrade.Workload{Image: running, ServingStatefulSet: "bao"}},
		"unknown strategy":             {cluster("Other", "", nil), upgrade.Workload{Image: running, ServingStatefulSet: "bao"}},
		"rolling":                      {cluster(openbaov1alpha1.RollingUpgrade, "", nil), upgrade.Workload{Image: target, ServingStatefulSet: "bao"}},
		"blue/green, Blue":             {cluster(openbaov1alpha1.BlueGreenUpgrade, "", green), upgrade.Workload{Image: running, ServingStatefulSet: "bao"}},
		"blue/green, clients on Green": {cluster(openbaov1alpha1.BlueGreenUpgrade, "", cutOver), upgrade.Workload{Image: running, ServingStatefulSet: "bao-1a2b3c4d"}},
		// Green is made the active StatefulSet while Blue retires: its template keeps the
		// target, or its pods would move back to the old version.
		"blue/green, Green active": {cluster(openbaov1alpha1.BlueGreenUpgrade, "bao-1a2b3c4d", cutOver), upgrade.Workload{Image: target, ServingStatefulSet: "bao-1a2b3c4d"}},
	} {
		assert.Equal(t, tc.want, m.Workload(tc.c), name)
	}
}
