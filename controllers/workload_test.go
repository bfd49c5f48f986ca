package controllers

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade/bluegreen"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade/rolling"
)

// What the controller applies (every server StatefulSet and the client Service's selection)
// comes from the strategy of the upgrade in flight, never from a test of its name.
func TestWorkloadOfEachStrategy(t *testing.T) {
	const running, target = "quay.io/openbao/openbao:2.6.2", "quay.io/openbao/openbao:2.7.2"
	m := &upgrade.Manager{Strategies: upgrade.Strategies{
		openbaov1alpha1.RollingUpgrade:   rolling.Strategy{},
		openbaov1alpha1.BlueGreenUpgrade: bluegreen.Strategy{},
	}}
	cluster := func(strategy openbaov1alpha1.UpgradeStrategyType, active string, bg *openbaov1alpha1.BlueGreenStatus, partition *int32) *openbaov1alpha1.OpenBaoCluster {
		c := &openbaov1alpha1.OpenBaoCluster{}
		c.Name = "bao"
		c.Status.CurrentImage, c.Status.StatefulSet = running, active
		if strategy != "" {
			c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{Strategy: strategy, ToImage: target, Revision: "1a2b3c4d", BlueGreen: bg}
			if partition != nil {
				c.Status.Upgrade.Rolling = &openbaov1alpha1.RollingStatus{Revision: "0f0f0f0f", Partition: partition}
			}
		}
		return c
	}
	const green = "bao-1a2b3c4d"
	bg := func(phase openbaov1alpha1.BlueGreenPhase, serving, greenName string, aborting bool) *openbaov1alpha1.BlueGreenStatus {
		return &openbaov1alpha1.BlueGreenStatus{BlueStatefulSet: "bao", GreenStatefulSet: greenName, ServingStatefulSet: serving, Phase: phase, Aborting: aborting}
	}
	blueOnly := []resources.ServerSet{{Name: "bao", Image: running}}
	blueAndGreen := []resources.ServerSet{{Name: "bao", Image: running}, {Name: green, Image: target, NonVoterOf: "bao"}}
	greenOnly := []resources.ServerSet{{Name: green, Image: target}}
	for name, tc := range map[string]struct {
		c    *openbaov1alpha1.OpenBaoCluster
		want upgrade.Workload
	}{
		"no upgrade":       {cluster("", "", nil, nil), upgrade.Workload{Sets: blueOnly, Serving: "bao"}},
		"unknown strategy": {cluster("Other", "", nil, nil), upgrade.Workload{Sets: blueOnly, Serving: "bao"}},
		"rolling, nothing released yet": {cluster(openbaov1alpha1.RollingUpgrade, "", nil, nil),
			upgrade.Workload{Sets: []resources.ServerSet{{Name: "bao", Image: target}}, Serving: "bao"}},
		// The partition recorded for an earlier target is kept: a retarget does not take back
		// what was released.
		"rolling, partition 1": {cluster(openbaov1alpha1.RollingUpgrade, "", nil, ptr.To[int32](1)),
			upgrade.Workload{Sets: []resources.ServerSet{{Name: "bao", Image: target, Partition: ptr.To[int32](1)}}, Serving: "bao"}},
		"blue/green, snapshot before Green": {cluster(openbaov1alpha1.BlueGreenUpgrade, "", bg("", "bao", green, false), nil), upgrade.Workload{Sets: blueOnly, Serving: "bao"}},
		"blue/green, Green syncing":         {cluster(openbaov1alpha1.BlueGreenUpgrade, "", bg(openbaov1alpha1.BlueGreenSyncing, "bao", green, false), nil), upgrade.Workload{Sets: blueAndGreen, Serving: "bao"}},
		"blue/green, clients on Green":      {cluster(openbaov1alpha1.BlueGreenUpgrade, "", bg(openbaov1alpha1.BlueGreenVerifying, green, green, false), nil), upgrade.Workload{Sets: blueAndGreen, Serving: green}},
		"blue/green, retiring Blue":         {cluster(openbaov1alpha1.BlueGreenUpgrade, "", bg(openbaov1alpha1.BlueGreenRetiringBlue, green, green, false), nil), upgrade.Workload{Sets: blueAndGreen, Serving: green}},
		// Aborting, or built for an earlier target: Green is left to the strategy's removal.
		"blue/green, aborting":                {cluster(openbaov1alpha1.BlueGreenUpgrade, "", bg(openbaov1alpha1.BlueGreenAborting, "bao", green, true), nil), upgrade.Workload{Sets: blueOnly, Serving: "bao"}},
		"blue/green, Green of another target": {cluster(openbaov1alpha1.BlueGreenUpgrade, "", bg(openbaov1alpha1.BlueGreenSyncing, "bao", "bao-99999999", false), nil), upgrade.Workload{Sets: blueOnly, Serving: "bao"}},
		// No Blue server is in Raft any more: Green is the active set, on the target, and
		// Blue is no longer declared (its deletion is the strategy's step).
		"blue/green, deleting Blue": {cluster(openbaov1alpha1.BlueGreenUpgrade, "", bg(openbaov1alpha1.BlueGreenDeletingBlue, green, green, false), nil), upgrade.Workload{Sets: greenOnly, Serving: green}},
		// A release before DeletingBlue recorded Green as the active StatefulSet instead.
		"blue/green, Green active (previous release)": {cluster(openbaov1alpha1.BlueGreenUpgrade, green, bg(openbaov1alpha1.BlueGreenRetiringBlue, green, green, false), nil), upgrade.Workload{Sets: greenOnly, Serving: green}},
	} {
		assert.Equal(t, tc.want, m.Workload(tc.c), name)
	}
}
