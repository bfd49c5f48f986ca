package resources

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// ServerSet is one server StatefulSet as the cluster wants it in this pass. The upgrade
// strategies declare the server sets (pkg/upgrade.Workload); the controller builds their
// objects with ServerSetObjects and applies them.
type ServerSet struct {
	// Name of the StatefulSet; its pods are <Name>-<ordinal>.
	Name string
	// Image of the servers' pod template.
	Image string
	// Partition, when set, is the StatefulSet's partition: pods with an ordinal at or above
	// it run the template. Unset, it is the number of replicas, so that no pod moves to a
	// new template: pods move only when an upgrade lowers the partition.
	Partition *int32
	// NonVoterOf names the StatefulSet whose Raft cluster these servers join as non-voters
	// (a blue/green upgrade's new servers); "" for servers that join their own peers.
	NonVoterOf string
}

// ServerSetParams are what the server set's objects are built from besides the set itself.
type ServerSetParams struct {
	// Config are the active StatefulSet's configuration parameters; each set's are derived
	// from them (ConfigParams.ForServerSet).
	Config ConfigParams
	// SelfInit is the self-initialization configuration ("" once the cluster is
	// initialized, and for every set but the active one).
	SelfInit string
	// Replicas of the StatefulSet.
	Replicas int32
	// Platform says whether the pods choose their user and group IDs.
	Platform Platform
}

// ServerSetObjects builds a server set's ConfigMap and StatefulSet. The configuration's hash
// goes onto the pod template, so that a changed configuration makes a new revision.
func ServerSetObjects(c *openbaov1alpha1.OpenBaoCluster, set ServerSet, p ServerSetParams) (*corev1.ConfigMap, *appsv1.StatefulSet, error) {
	config, err := RenderConfig(p.Config.ForServerSet(set.Name, set.NonVoterOf))
	if err != nil {
		return nil, nil, fmt.Errorf("the configuration of StatefulSet %s cannot be rendered: %w", set.Name, err)
	}
	partition := p.Replicas
	if set.Partition != nil {
		partition = *set.Partition
	}
	sts := StatefulSet(c, StatefulSetParams{
		Name: set.Name, Image: set.Image, Replicas: p.Replicas, Partition: partition,
		ConfigHash: ConfigHash(config), Platform: p.Platform,
	})
	return ConfigMap(c, set.Name, config, p.SelfInit), sts, nil
}

// ForServerSet are the configuration parameters of the servers of StatefulSet name, derived
// from the active StatefulSet's: they join their own peers, or, with nonVoterOf, the pods
// of that StatefulSet as non-voters.
func (p ConfigParams) ForServerSet(name, nonVoterOf string) ConfigParams {
	out := p
	out.StatefulSet = name
	if nonVoterOf != "" {
		peers := p
		peers.StatefulSet, peers.JoinTargets = nonVoterOf, nil
		out.NonVoter = true
		out.JoinTargets = DefaultJoinTargets(peers)
	}
	return out
}

// ConfigHash is a short, stable hash of a rendered configuration.
func ConfigHash(config string) string {
	raw, _ := json.Marshal(config) // a string always marshals
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}
