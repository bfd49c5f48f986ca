package controllers

import (
	"fmt"

	"k8s.io/client-go/discovery"

	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// OpenShiftSecurityGroup is the API group of OpenShift's SecurityContextConstraints. Its
// presence in discovery is how operators tell OpenShift from other Kubernetes distributions.
const OpenShiftSecurityGroup = "security.openshift.io"

// Pod ID policies of the --pod-ids flag.
const (
	// PodIDsAuto lets the platform assign IDs where discovery serves OpenShiftSecurityGroup.
	PodIDsAuto = "auto"
	// PodIDsPlatform never sets IDs: an admission controller of the cluster assigns them.
	PodIDsPlatform = "platform"
	// PodIDsOperator always sets the IDs of the images' users.
	PodIDsOperator = "operator"
)

// DetectPlatform decides who chooses the user and group IDs of the pods the operator
// creates. With policy PodIDsAuto it asks discovery once: OpenShift's restricted-v2
// SecurityContextConstraints reject pods whose runAsUser or fsGroup lie outside the
// namespace's range and fill them in when they are unset, so there the operator sets none.
func DetectPlatform(d discovery.DiscoveryInterface, policy string) (resources.Platform, error) {
	switch policy {
	case PodIDsPlatform:
		return resources.Platform{AssignsPodIDs: true}, nil
	case PodIDsOperator:
		return resources.Platform{}, nil
	case PodIDsAuto, "":
	default:
		return resources.Platform{}, fmt.Errorf("pod ID policy %q: want %s, %s or %s", policy, PodIDsAuto, PodIDsPlatform, PodIDsOperator)
	}
	groups, err := d.ServerGroups()
	if err != nil {
		return resources.Platform{}, fmt.Errorf("discover API groups: %w", err)
	}
	for _, g := range groups.Groups {
		if g.Name == OpenShiftSecurityGroup {
			return resources.Platform{AssignsPodIDs: true}, nil
		}
	}
	return resources.Platform{}, nil
}
