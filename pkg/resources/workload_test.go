package resources

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

func testCluster() *openbaov1alpha1.OpenBaoCluster {
	return &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "vault"},
		Spec:       openbaov1alpha1.OpenBaoClusterSpec{Version: "2.7.2", Replicas: ptr.To[int32](3)},
	}
}

func TestStatefulSet(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*openbaov1alpha1.OpenBaoCluster)
		params StatefulSetParams
		check  func(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, sts appsv1.StatefulSet)
	}{
		{
			name:   "defaults",
			params: StatefulSetParams{Name: "bao", Image: "quay.io/openbao/openbao:2.7.2", Replicas: 3, Partition: 3, ConfigHash: "h1"},
			check: func(t *testing.T, _ *openbaov1alpha1.OpenBaoCluster, sts appsv1.StatefulSet) {
				assert.Equal(t, int32(3), *sts.Spec.UpdateStrategy.RollingUpdate.Partition)
				assert.Equal(t, "bao-internal", sts.Spec.ServiceName)
				assert.Equal(t, "h1", sts.Spec.Template.Annotations[AnnotationConfigHash])
				assert.Equal(t, DefaultStorageSize, sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage])
				assert.Nil(t, sts.Spec.VolumeClaimTemplates[0].Spec.StorageClassName)
				ctr := sts.Spec.Template.Spec.Containers[0]
				assert.Equal(t, "quay.io/openbao/openbao:2.7.2", ctr.Image)
				assert.Contains(t, strings.Join(ctr.Command, " "), "bao server")
				assert.Equal(t, corev1.URISchemeHTTPS, ctr.ReadinessProbe.HTTPGet.Scheme)
				assert.Contains(t, ctr.ReadinessProbe.HTTPGet.Path, "standbyok=true")
				assert.Contains(t, ctr.LivenessProbe.HTTPGet.Path, "sealedcode=204")
				env := map[string]string{}
				for _, e := range ctr.Env {
					env[e.Name] = e.Value
				}
				assert.Equal(t, "https://$(POD_NAME).bao-internal.vault.svc:8200", env["BAO_API_ADDR"])
				assert.Equal(t, "https://$(POD_NAME).bao-internal.vault.svc:8201", env["BAO_CLUSTER_ADDR"])
				assert.Equal(t, "$(POD_NAME)", env["BAO_RAFT_NODE_ID"])
			},
		},
		{
			name:   "pod security",
			params: StatefulSetParams{Name: "bao", Image: "i", Replicas: 3, Partition: 3},
			check: func(t *testing.T, _ *openbaov1alpha1.OpenBaoCluster, sts appsv1.StatefulSet) {
				pod := sts.Spec.Template.Spec
				assert.True(t, *pod.SecurityContext.RunAsNonRoot)
				assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, pod.SecurityContext.SeccompProfile.Type)
				assert.False(t, *pod.AutomountServiceAccountToken, "OpenBao needs no Kubernetes API access")
				assert.GreaterOrEqual(t, *pod.TerminationGracePeriodSeconds, int64(15), "a stepped-down node needs ~12 s to stop")
				sc := pod.Containers[0].SecurityContext
				assert.True(t, *sc.ReadOnlyRootFilesystem)
				assert.False(t, *sc.AllowPrivilegeEscalation)
				assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
			},
		},
		{
			name: "storage, resources, user TLS secret",
			mutate: func(c *openbaov1alpha1.OpenBaoCluster) {
				c.Spec.Storage = openbaov1alpha1.StorageSpec{Size: resource.MustParse("1Gi"), StorageClassName: ptr.To("fast")}
				c.Spec.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}}
				c.Spec.TLS = &openbaov1alpha1.TLSSpec{ExistingSecret: "mine"}
			},
			params: StatefulSetParams{Name: "bao", Image: "i", Replicas: 5, Partition: 2},
			check: func(t *testing.T, _ *openbaov1alpha1.OpenBaoCluster, sts appsv1.StatefulSet) {
				assert.Equal(t, int32(5), *sts.Spec.Replicas)
				assert.Equal(t, int32(2), *sts.Spec.UpdateStrategy.RollingUpdate.Partition)
				assert.Equal(t, resource.MustParse("1Gi"), sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage])
				assert.Equal(t, "fast", *sts.Spec.VolumeClaimTemplates[0].Spec.StorageClassName)
				assert.Equal(t, resource.MustParse("512Mi"), sts.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory])
				var tlsSecret string
				for _, v := range sts.Spec.Template.Spec.Volumes {
					if v.Name == "tls" {
						tlsSecret = v.Secret.SecretName
					}
				}
				assert.Equal(t, "mine", tlsSecret)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testCluster()
			if tc.mutate != nil {
				tc.mutate(c)
			}
			sts := StatefulSet(c, tc.params)
			require.NotNil(t, sts)
			assert.Equal(t, StatefulSetSelector(c, tc.params.Name), sts.Spec.Selector.MatchLabels)
			for k, v := range StatefulSetSelector(c, tc.params.Name) {
				assert.Equal(t, v, sts.Spec.Template.Labels[k], "template carries the selector")
			}
			tc.check(t, c, *sts)
		})
	}
}

func TestServerDNSNamesCoverEveryPodAndService(t *testing.T) {
	names := ServerDNSNames(testCluster())
	for _, want := range []string{"bao", "bao.vault.svc", "bao.vault.svc.cluster.local", "bao-internal.vault.svc", "*.bao-internal.vault.svc"} {
		assert.Contains(t, names, want)
	}
	assert.Equal(t, "bao-2.bao-internal.vault.svc", PodDNSName(testCluster(), "bao-2"))
}

func TestDesiredImage(t *testing.T) {
	c := testCluster()
	assert.Equal(t, "quay.io/openbao/openbao:2.7.2", DesiredImage(c, ""))
	c.Spec.Version = "v2.7.2"
	assert.Equal(t, "mirror/openbao:2.7.2", DesiredImage(c, "mirror/openbao"))
	c.Spec.Image = "registry.example/bao@sha256:abc"
	assert.Equal(t, "registry.example/bao@sha256:abc", DesiredImage(c, ""))
}

// TestPodIDsFollowThePlatform: where the platform assigns pod IDs (OpenShift's
// restricted-v2 SCC), server pods and upgrade Jobs ask for none; elsewhere they run as the
// images' users. The rest of the restricted profile is the same on both.
func TestPodIDsFollowThePlatform(t *testing.T) {
	c := testCluster()
	for _, tc := range []struct {
		name     string
		platform Platform
		server   *corev1.PodSecurityContext
		job      *corev1.PodSecurityContext
	}{
		{
			name:     "the operator sets the IDs",
			platform: Platform{},
			server:   &corev1.PodSecurityContext{RunAsUser: ptr.To(RunAsUser), RunAsGroup: ptr.To(RunAsGroup), FSGroup: ptr.To(FSGroup)},
			job:      &corev1.PodSecurityContext{RunAsUser: ptr.To(executorUser), RunAsGroup: ptr.To(executorUser), FSGroup: ptr.To(executorUser)},
		},
		{
			name:     "the platform assigns the IDs",
			platform: Platform{AssignsPodIDs: true},
			server:   &corev1.PodSecurityContext{},
			job:      &corev1.PodSecurityContext{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sts := StatefulSet(c, StatefulSetParams{Name: "bao", Image: "i", Replicas: 3, Partition: 3, Platform: tc.platform})
			snapshot := ExecutorJob(c, ExecutorJobParams{Name: "j", Image: "e", Action: ActionSnapshot, TargetPod: "bao-0", Platform: tc.platform})
			stepDown := ExecutorJob(c, ExecutorJobParams{Name: "j", Image: "e", Action: ActionStepDown, TargetPod: "bao-0", Platform: tc.platform})
			for what, got := range map[string]struct {
				pod  corev1.PodSpec
				want *corev1.PodSecurityContext
			}{
				"server":    {sts.Spec.Template.Spec, tc.server},
				"snapshot":  {snapshot.Spec.Template.Spec, tc.job},
				"step-down": {stepDown.Spec.Template.Spec, tc.job},
			} {
				psc := got.pod.SecurityContext
				require.NotNil(t, psc, what)
				assert.Equal(t, got.want.RunAsUser, psc.RunAsUser, "%s runAsUser", what)
				assert.Equal(t, got.want.RunAsGroup, psc.RunAsGroup, "%s runAsGroup", what)
				assert.Equal(t, got.want.FSGroup, psc.FSGroup, "%s fsGroup", what)
				assert.True(t, *psc.RunAsNonRoot, what)
				assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type, what)
				for _, ctr := range got.pod.Containers {
					sc := ctr.SecurityContext
					require.NotNil(t, sc, what)
					assert.Nil(t, sc.RunAsUser, "%s/%s sets no user of its own", what, ctr.Name)
					assert.Nil(t, sc.RunAsGroup, "%s/%s sets no group of its own", what, ctr.Name)
					assert.True(t, *sc.RunAsNonRoot, what)
					assert.False(t, *sc.AllowPrivilegeEscalation, what)
					assert.True(t, *sc.ReadOnlyRootFilesystem, what)
					assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, what)
				}
			}
		})
	}
}
