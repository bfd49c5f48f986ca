package envtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/openbao-operator/openbao-operator/controllers"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/openshift"
)

// TestOpenShiftIsDetectedAndLeftToAssignPodIDs: the operator tells OpenShift by the
// security.openshift.io API group in discovery (here served by the CRD the local cluster's
// SCC emulation installs); there the StatefulSet it creates asks for no user, group or
// fsGroup, elsewhere it runs OpenBao as the image's user.
func TestOpenShiftIsDetectedAndLeftToAssignPodIDs(t *testing.T) {
	kube := kubernetes.NewForConfigOrDie(restConfig)
	detect := func(policy string) resources.Platform {
		t.Helper()
		p, err := controllers.DetectPlatform(kube.Discovery(), policy)
		require.NoError(t, err)
		return p
	}
	assert.False(t, detect(controllers.PodIDsAuto).AssignsPodIDs, "plain Kubernetes")
	assert.True(t, detect(controllers.PodIDsPlatform).AssignsPodIDs, "forced: the platform assigns")
	_, err := controllers.DetectPlatform(kube.Discovery(), "openshift")
	assert.Error(t, err, "an unknown policy is refused")

	plain := newHarness(t)
	require.NoError(t, plain.client.Create(t.Context(), newCluster(plain.namespace, "bao")))
	plain.converge("bao")
	sts := &appsv1.StatefulSet{}
	require.NoError(t, plain.get("bao", sts))
	psc := sts.Spec.Template.Spec.SecurityContext
	assert.Equal(t, ptr.To(resources.RunAsUser), psc.RunAsUser)
	assert.Equal(t, ptr.To(resources.RunAsGroup), psc.RunAsGroup)
	assert.Equal(t, ptr.To(resources.FSGroup), psc.FSGroup)

	crd := &apiextensionsv1.CustomResourceDefinition{}
	require.NoError(t, yaml.UnmarshalStrict(openshift.CRDManifest, crd))
	crdClient, err := client.New(restConfig, client.Options{Scheme: apiextensionsScheme(t)})
	require.NoError(t, err)
	require.NoError(t, crdClient.Create(t.Context(), crd))
	t.Cleanup(func() { _ = crdClient.Delete(context.Background(), crd) })
	require.Eventually(t, func() bool {
		p, err := controllers.DetectPlatform(kube.Discovery(), controllers.PodIDsAuto)
		return err == nil && p.AssignsPodIDs
	}, time.Minute, 200*time.Millisecond, "security.openshift.io in discovery means OpenShift")
	assert.False(t, detect(controllers.PodIDsOperator).AssignsPodIDs, "forced: the operator sets IDs even on OpenShift")

	onOpenShift := newHarness(t)
	onOpenShift.reconciler.Options.Platform = detect(controllers.PodIDsAuto)
	require.NoError(t, onOpenShift.client.Create(t.Context(), newCluster(onOpenShift.namespace, "bao")))
	onOpenShift.converge("bao")
	sts = &appsv1.StatefulSet{}
	require.NoError(t, onOpenShift.get("bao", sts))
	psc = sts.Spec.Template.Spec.SecurityContext
	assert.Nil(t, psc.RunAsUser, "runAsUser is the platform's")
	assert.Nil(t, psc.RunAsGroup, "runAsGroup is the platform's")
	assert.Nil(t, psc.FSGroup, "fsGroup is the platform's")
	assert.True(t, *psc.RunAsNonRoot)
	assert.Equal(t, "RuntimeDefault", string(psc.SeccompProfile.Type))
	sc := sts.Spec.Template.Spec.Containers[0].SecurityContext
	assert.True(t, *sc.ReadOnlyRootFilesystem)
	assert.False(t, *sc.AllowPrivilegeEscalation)
	assert.Equal(t, "ALL", string(sc.Capabilities.Drop[0]))
}

func apiextensionsScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	require.NoError(t, apiextensionsv1.AddToScheme(s))
	return s
}
