package resources

import (
	"path"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// JWT audiences: each identity's tokens are requested for its own audience, so a token
// meant for one purpose is refused for the other.
const (
	// UpgradeAudience is the audience of the upgrade Jobs' projected tokens.
	UpgradeAudience = "openbao-upgrade"
	// OperatorAudience is the audience of the operator's own projected token.
	OperatorAudience = "openbao-operator"
)

// ClusterConfigInputs are what the configuration needs besides the cluster's spec.
type ClusterConfigInputs struct {
	// Issuer and IssuerKeysPEM describe the Kubernetes service-account issuer.
	Issuer        string
	IssuerKeysPEM []string
	// OperatorNamespace and OperatorServiceAccount identify the operator.
	OperatorNamespace, OperatorServiceAccount string
	// SelfInit are the user's requests.
	SelfInit []InitRequest
}

// ClusterConfigParams maps a cluster to the parameters of its server configuration.
func ClusterConfigParams(c *openbaov1alpha1.OpenBaoCluster, in ClusterConfigInputs) ConfigParams {
	names := NamesFor(c)
	role := c.Spec.Upgrade.JWTAuthRole
	if role == "" {
		role = DefaultUpgradeRole
	}
	return ConfigParams{
		ClusterName:           c.Name,
		Namespace:             c.Namespace,
		StatefulSet:           names.StatefulSet,
		Replicas:              c.Spec.ReplicaCount(),
		HeadlessService:       names.HeadlessService,
		TLSCertFile:           path.Join(TLSDir, "tls.crt"),
		TLSKeyFile:            path.Join(TLSDir, "tls.key"),
		TLSCAFile:             path.Join(TLSDir, "ca.crt"),
		DataDir:               DataDir,
		PerformanceMultiplier: c.Spec.PerformanceMultiplierOrDefault(),
		SealKeyFile:           path.Join(SealDir, SealKeyFile),
		SealKeyID:             SealKeyID,
		JWT: JWTInit{
			Issuer:                in.Issuer,
			ValidationPubKeysPEM:  in.IssuerKeysPEM,
			UpgradeRole:           role,
			UpgradeAudience:       UpgradeAudience,
			UpgradeServiceAccount: names.UpgradeServiceAccount,
			OperatorSubject:       "system:serviceaccount:" + in.OperatorNamespace + ":" + in.OperatorServiceAccount,
			OperatorAudience:      OperatorAudience,
		},
		SelfInit: in.SelfInit,
	}
}
