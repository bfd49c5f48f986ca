package resources

import (
	"path"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// Pod security: OpenBao needs no privilege. The user and group are those of the official
// image's openbao user; they are set only where the platform does not assign IDs itself
// (see Platform).
const (
	RunAsUser  int64 = 100
	RunAsGroup int64 = 1000
	FSGroup    int64 = 1000

	// TerminationGracePeriodSeconds leaves OpenBao time to leave the cluster cleanly: a node
	// that has just stepped down can take 11-12 s to stop.
	TerminationGracePeriodSeconds int64 = 60
)

// DefaultStorageSize is used when spec.storage.size is empty.
var DefaultStorageSize = resource.MustParse("10Gi")

// StatefulSetParams are the inputs of a server StatefulSet besides the cluster's spec.
type StatefulSetParams struct {
	// Name of the StatefulSet; its pods are <Name>-<ordinal>.
	Name string
	// Image of the OpenBao container.
	Image string
	// Replicas of the StatefulSet.
	Replicas int32
	// Partition of the rolling update: pods with an ordinal at or above it run the newest
	// template. The operator keeps it at Replicas unless an upgrade lowers it.
	Partition int32
	// ConfigHash changes when the configuration or the certificates change.
	ConfigHash string
	// Platform says whether the pods choose their user and group IDs.
	Platform Platform
}

// Platform is what the cluster the operator runs on decides for the pods it creates.
type Platform struct {
	// AssignsPodIDs is true where the platform gives every pod its user ID and fsGroup from
	// the namespace's range and rejects pods that ask for IDs outside it (OpenShift's
	// restricted-v2 SecurityContextConstraints). The operator then leaves runAsUser,
	// runAsGroup and fsGroup unset; the rest of the restricted profile stays.
	AssignsPodIDs bool
}

// podSecurityContext is the restricted profile of a pod: non-root, RuntimeDefault seccomp,
// and the given IDs unless the platform assigns them. A platform-assigned user runs with
// group 0 and the fsGroup as supplementary group, which owns the pod's writable volumes.
func podSecurityContext(p Platform, user, group, fsGroup int64) *corev1.PodSecurityContext {
	sc := &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if !p.AssignsPodIDs {
		sc.RunAsUser, sc.RunAsGroup, sc.FSGroup = ptr.To(user), ptr.To(group), ptr.To(fsGroup)
	}
	return sc
}

// StatefulSet builds a cluster's server StatefulSet.
func StatefulSet(c *openbaov1alpha1.OpenBaoCluster, p StatefulSetParams) *appsv1.StatefulSet {
	names := NamesFor(c)
	labels := Labels(c, ComponentServer)
	labels[LabelStatefulSet] = p.Name
	size := c.Spec.Storage.Size
	if size.IsZero() {
		size = DefaultStorageSize
	}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: c.Namespace, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To(p.Replicas),
			ServiceName: names.HeadlessService,
			Selector:    &metav1.LabelSelector{MatchLabels: StatefulSetSelector(c, p.Name)},
			// OrderedReady: pod-0 initializes the cluster alone before the others join it.
			PodManagementPolicy: appsv1.OrderedReadyPodManagement,
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{
				Type: appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{
					Partition: ptr.To(p.Partition),
				},
			},
			// The data volumes outlive the cluster object: a cluster re-created with the
			// same name finds its data (and its unseal key, which is kept too).
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
				WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      labels,
					Annotations: map[string]string{AnnotationConfigHash: p.ConfigHash},
				},
				Spec: podSpec(c, p.Image, ConfigMapName(p.Name), p.Platform),
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data", Labels: labels},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: c.Spec.Storage.StorageClassName,
					Resources: corev1.VolumeResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceStorage: size},
					},
				},
			}},
		},
	}
}

func podSpec(c *openbaov1alpha1.OpenBaoCluster, image, configMap string, platform Platform) corev1.PodSpec {
	names := NamesFor(c)
	podDNS := "$(POD_NAME)." + names.HeadlessService + "." + c.Namespace + ".svc"
	healthPath := "/v1/sys/health?standbyok=true&perfstandbyok=true"
	return corev1.PodSpec{
		ServiceAccountName: names.ServiceAccount,
		// OpenBao does not call the Kubernetes API: its pods get no API credentials.
		AutomountServiceAccountToken:  ptr.To(false),
		TerminationGracePeriodSeconds: ptr.To(TerminationGracePeriodSeconds),
		EnableServiceLinks:            ptr.To(false),
		SecurityContext:               podSecurityContext(platform, RunAsUser, RunAsGroup, FSGroup),
		Containers: []corev1.Container{{
			Name:            "openbao",
			Image:           image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Command:         ServerCommand(ConfigDir, DataDir),
			Env: []corev1.EnvVar{
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
				{Name: "BAO_API_ADDR", Value: "https://" + podDNS + ":8200"},
				{Name: "BAO_CLUSTER_ADDR", Value: "https://" + podDNS + ":8201"},
				{Name: "BAO_RAFT_NODE_ID", Value: "$(POD_NAME)"},
				{Name: "BAO_LOG_FORMAT", Value: "standard"},
				// The CLI inside the pod talks to its own listener.
				{Name: "BAO_ADDR", Value: "https://127.0.0.1:8200"},
				{Name: "BAO_CACERT", Value: path.Join(TLSDir, "ca.crt")},
				{Name: "HOME", Value: DataDir},
			},
			Ports: []corev1.ContainerPort{
				{Name: "api", ContainerPort: APIPort, Protocol: corev1.ProtocolTCP},
				{Name: "cluster", ContainerPort: ClusterPort, Protocol: corev1.ProtocolTCP},
			},
			Resources: c.Spec.Resources,
			// Ready means initialized, unsealed and serving, as active or standby node. It is
			// probed every second: a replaced server is unsealed about 2-3 s after it starts,
			// and an upgrade moves on only once it is Ready, so a slower probe adds to every
			// server's turn; three failures in a row (3 s) take a server out of the Service.
			ReadinessProbe: &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: healthPath, Port: intstr.FromInt32(APIPort), Scheme: corev1.URISchemeHTTPS,
				}},
				InitialDelaySeconds: 1, PeriodSeconds: 1, TimeoutSeconds: 1, FailureThreshold: 3, SuccessThreshold: 1,
			},
			// Alive means the process answers; a sealed or joining node is alive.
			LivenessProbe: &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: healthPath + "&sealedcode=204&uninitcode=204", Port: intstr.FromInt32(APIPort), Scheme: corev1.URISchemeHTTPS,
				}},
				InitialDelaySeconds: 60, PeriodSeconds: 10, TimeoutSeconds: 5, FailureThreshold: 6, SuccessThreshold: 1,
			},
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				RunAsNonRoot:             ptr.To(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "config", MountPath: ConfigDir, ReadOnly: true},
				{Name: "tls", MountPath: TLSDir, ReadOnly: true},
				{Name: "seal", MountPath: SealDir, ReadOnly: true},
				{Name: "data", MountPath: DataDir},
				{Name: "tmp", MountPath: "/tmp"},
			},
		}},
		Volumes: []corev1.Volume{
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: configMap},
				DefaultMode:          ptr.To[int32](0o444),
			}}},
			{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName:  TLSSecretName(c),
				DefaultMode: ptr.To[int32](0o440),
			}}},
			{Name: "seal", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName:  names.SealSecret,
				DefaultMode: ptr.To[int32](0o440),
			}}},
			{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
	}
}

// TLSSecretName is the Secret with the listener's tls.crt, tls.key and ca.crt: the user's
// own, or the one the operator manages.
func TLSSecretName(c *openbaov1alpha1.OpenBaoCluster) string {
	if c.Spec.TLS != nil && c.Spec.TLS.ExistingSecret != "" {
		return c.Spec.TLS.ExistingSecret
	}
	return NamesFor(c).TLSSecret
}

// HeadlessService gives each server pod a stable DNS name, also before it is ready: a
// joining server must reach its peers before any of them is ready.
func HeadlessService(c *openbaov1alpha1.OpenBaoCluster) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: NamesFor(c).HeadlessService, Namespace: c.Namespace, Labels: Labels(c, ComponentServer)},
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 SelectorLabels(c),
			Ports:                    servicePorts(true),
		},
	}
}

// ClientService is where applications reach OpenBao; only ready servers receive traffic.
func ClientService(c *openbaov1alpha1.OpenBaoCluster, selector map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: NamesFor(c).ClientService, Namespace: c.Namespace, Labels: Labels(c, ComponentServer)},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selector,
			Ports:    servicePorts(false),
		},
	}
}

func servicePorts(withCluster bool) []corev1.ServicePort {
	ports := []corev1.ServicePort{{Name: "api", Port: APIPort, TargetPort: intstr.FromString("api"), Protocol: corev1.ProtocolTCP}}
	if withCluster {
		ports = append(ports, corev1.ServicePort{Name: "cluster", Port: ClusterPort, TargetPort: intstr.FromString("cluster"), Protocol: corev1.ProtocolTCP})
	}
	return ports
}

// PodDisruptionBudget lets voluntary disruptions (node drains) take one server at a time,
// so a Raft majority always stays.
func PodDisruptionBudget(c *openbaov1alpha1.OpenBaoCluster) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: NamesFor(c).PodDisruptionBudget, Namespace: c.Namespace, Labels: Labels(c, ComponentServer)},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: SelectorLabels(c)},
		},
	}
}

// ServerServiceAccount is the identity of the OpenBao pods. It has no RBAC permissions and
// its token is not mounted: OpenBao never calls the Kubernetes API.
func ServerServiceAccount(c *openbaov1alpha1.OpenBaoCluster) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		ObjectMeta:                   metav1.ObjectMeta{Name: NamesFor(c).ServiceAccount, Namespace: c.Namespace, Labels: Labels(c, ComponentServer)},
		AutomountServiceAccountToken: ptr.To(false),
	}
}

// UpgradeServiceAccount is the identity of the upgrade Jobs. It has no RBAC permissions: its
// only use is a projected token that OpenBao's JWT auth accepts for the upgrade role.
func UpgradeServiceAccount(c *openbaov1alpha1.OpenBaoCluster) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		ObjectMeta:                   metav1.ObjectMeta{Name: NamesFor(c).UpgradeServiceAccount, Namespace: c.Namespace, Labels: Labels(c, ComponentJob)},
		AutomountServiceAccountToken: ptr.To(false),
	}
}

// ConfigMap holds the rendered OpenBao configuration of one StatefulSet's servers. It has no
// secrets: the seal key and the TLS key live in Secrets. selfInit is empty once the cluster
// has been initialized.
func ConfigMap(c *openbaov1alpha1.OpenBaoCluster, statefulSet, config, selfInit string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName(statefulSet), Namespace: c.Namespace, Labels: Labels(c, ComponentServer)},
		Data:       map[string]string{ConfigFile: config, SelfInitConfigFile: selfInit},
	}
}
