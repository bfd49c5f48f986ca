package controllers

import (
	"testing"

	"github.com/stretchr/testify/assert"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

func TestTemplateImage(t *testing.T) {
	const running, target = "quay.io/openbao/openbao:2.6.2", "quay.io/openbao/openbao:2.7.2"
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
	for name, tc := range map[string]struct {
		c    *openbaov1alpha1.OpenBaoCluster
		want string
	}{
		"no upgrade":       {cluster("", "", nil), running},
		"rolling":          {cluster(openbaov1alpha1.RollingUpgrade, "", nil), target},
		"blue/green, Blue": {cluster(openbaov1alpha1.BlueGreenUpgrade, "", green), running},
		// Green is made the active StatefulSet while Blue retires: its template keeps the
		// target, or its pods would move back to the old version.
		"blue/green, Green active": {cluster(openbaov1alpha1.BlueGreenUpgrade, "bao-1a2b3c4d", green), target},
	} {
		assert.Equal(t, tc.want, templateImage(tc.c), name)
	}
}
