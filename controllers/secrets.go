package controllers

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/pki"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// reconcileSealKey creates the static seal key once. It is never regenerated nor
// overwritten: OpenBao's data is encrypted under it. Once the cluster is initialized, a
// deleted key is reported, not replaced. It has no owner reference, so that
// deleting the OpenBaoCluster leaves the key beside the data volumes, which are kept too.
func (r *OpenBaoClusterReconciler) reconcileSealKey(ctx context.Context, s *scope) (ctrl.Result, error) {
	name := resources.NamesFor(s.cluster).SealSecret
	existing := &corev1.Secret{}
	err := r.readOwnSecret(ctx, s, client.ObjectKey{Namespace: s.cluster.Namespace, Name: name}, existing)
	if err == nil {
		if len(existing.Data[resources.SealKeyFile]) != 32 {
			s.invalidSpec = fmt.Sprintf("Secret %s must hold a 32-byte key under %q; the operator never replaces it. Restore the original key.", name, resources.SealKeyFile)
			return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("%s", s.invalidSpec))
		}
		if given := existingSealSecret(s.cluster); given != "" && given != name {
			// The cluster has its key; a named key that differs is reported, never applied.
			key, problem, err := r.readExistingSealKey(ctx, s.cluster)
			if err != nil {
				return ctrl.Result{}, err
			}
			if problem == "" && !bytes.Equal(key, existing.Data[resources.SealKeyFile]) {
				problem = fmt.Sprintf("spec.seal.existingSecret %q holds another key than the cluster's own seal key %s, under which its data is encrypted. The operator never replaces a seal key: remove spec.seal.existingSecret, or create a new cluster with it.", given, name)
			}
			if problem != "" {
				s.invalidSpec = problem
				return ctrl.Result{RequeueAfter: requeueAfterError}, nil
			}
		}
		return ctrl.Result{}, nil
	}
	if !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("read seal key: %w", err)
	}
	if s.cluster.Status.Initialized {
		// The cluster's data is encrypted under the key that was deleted: a new key would not
		// decrypt it, and would stand in the way of the original being put back. The running
		// servers keep the key they read at start; the Secret must come back before any of
		// them restarts.
		s.invalidSpec = fmt.Sprintf("Secret %s, the seal key that encrypts this cluster's data, is missing. Create it again from your copy of the key (kubectl -n %s create secret generic %s --from-file=%s=<file>) before any server restarts; the operator never generates a new key for an initialized cluster.", name, s.cluster.Namespace, name, resources.SealKeyFile)
		return ctrl.Result{RequeueAfter: requeueAfterError}, nil
	}
	key := make([]byte, 32)
	if existingSealSecret(s.cluster) != "" {
		// A new cluster given another cluster's key (to restore its snapshots) copies it into
		// its own Secret, which is kept like a generated one.
		given, problem, err := r.readExistingSealKey(ctx, s.cluster)
		if err != nil {
			return ctrl.Result{}, err
		}
		if problem != "" {
			s.invalidSpec = problem
			return ctrl.Result{RequeueAfter: requeueAfterError}, nil
		}
		key = given
		log.FromContext(ctx).Info("Using the seal key of spec.seal.existingSecret", "from", s.cluster.Spec.Seal.ExistingSecret, "secret", name)
	} else if _, err := rand.Read(key); err != nil {
		return ctrl.Result{}, fmt.Errorf("generate seal key: %w", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: s.cluster.Namespace,
			Labels:      resources.Labels(s.cluster, resources.ComponentServer),
			Annotations: map[string]string{"openbao.org/retained": "This key decrypts the cluster's data volumes. It is kept when the OpenBaoCluster is deleted."},
		},
		Type:      corev1.SecretTypeOpaque,
		Immutable: ptrTo(true),
		Data:      map[string][]byte{resources.SealKeyFile: key},
	}
	log.FromContext(ctx).Info("Creating the static seal key", "secret", name)
	err = r.Create(ctx, secret)
	r.wrote(secret)
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return ctrl.Result{}, fmt.Errorf("create seal key: %w", err)
	}
	return ctrl.Result{}, nil
}

func existingSealSecret(c *openbaov1alpha1.OpenBaoCluster) string {
	if c.Spec.Seal == nil {
		return ""
	}
	return c.Spec.Seal.ExistingSecret
}

// readExistingSealKey reads the key of spec.seal.existingSecret by name from the API server
// (Secrets are never cached: UncachedKinds). problem says, for the Degraded condition, why it
// cannot be used.
func (r *OpenBaoClusterReconciler) readExistingSealKey(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster) (key []byte, problem string, err error) {
	name := c.Spec.Seal.ExistingSecret
	secret := &corev1.Secret{}
	if err := (secretReader{r}).Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Sprintf("spec.seal.existingSecret %q does not exist in namespace %s. Create it (the key %q holding the 32-byte seal key, such as another cluster's <cluster>-unseal-key) or remove the field to have a key generated; nothing is created until then.", name, c.Namespace, resources.SealKeyFile), nil
		}
		return nil, "", fmt.Errorf("read spec.seal.existingSecret %s: %w", name, err)
	}
	key = secret.Data[resources.SealKeyFile]
	if len(key) != 32 {
		return nil, fmt.Sprintf("spec.seal.existingSecret %q must hold a 32-byte seal key under the key %q (it holds %d bytes there). Copy the Secret <cluster>-unseal-key of the cluster whose snapshots you restore.", name, resources.SealKeyFile, len(key)), nil
	}
	return key, "", nil
}

// reconcileTLS makes sure the listener has a certificate: the user's Secret, checked, or the
// operator's CA and a server certificate it reissues before expiry or when names change.
func (r *OpenBaoClusterReconciler) reconcileTLS(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	if c.Spec.TLS != nil && c.Spec.TLS.ExistingSecret != "" {
		// Read by name from the API server, as every Secret (UncachedKinds).
		secret := &corev1.Secret{}
		if err := (secretReader{r}).Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: c.Spec.TLS.ExistingSecret}, secret); err != nil {
			if apierrors.IsNotFound(err) {
				s.invalidSpec = fmt.Sprintf("spec.tls.existingSecret %q does not exist in namespace %s. Create it with tls.crt, tls.key and ca.crt.", c.Spec.TLS.ExistingSecret, c.Namespace)
				return ctrl.Result{RequeueAfter: requeueAfterError}, nil
			}
			return ctrl.Result{}, err
		}
		for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, "ca.crt"} {
			if len(secret.Data[k]) == 0 {
				s.invalidSpec = fmt.Sprintf("spec.tls.existingSecret %q has no %s. It needs tls.crt, tls.key and ca.crt.", secret.Name, k)
				return ctrl.Result{RequeueAfter: requeueAfterError}, nil
			}
		}
		if why := pki.NeedsRenewal(secret.Data[corev1.TLSCertKey], secret.Data["ca.crt"], resources.ServerDNSNames(c), r.Clock.Now(), 0); why != "" {
			s.invalidSpec = fmt.Sprintf("spec.tls.existingSecret %q cannot serve this cluster: %s. See the README for the names it must cover.", secret.Name, why)
			return ctrl.Result{RequeueAfter: requeueAfterError}, nil
		}
		s.tlsCAPEM = secret.Data["ca.crt"]
		return ctrl.Result{}, nil
	}

	names := resources.NamesFor(c)
	now := r.Clock.Now()
	ca, err := r.ensureCA(ctx, s, names.CASecret)
	if err != nil {
		return ctrl.Result{}, err
	}
	existing := &corev1.Secret{}
	err = (secretReader{r}).Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: names.TLSSecret}, existing)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	dnsNames := resources.ServerDNSNames(c)
	why := "it does not exist"
	if err == nil {
		why = pki.NeedsRenewal(existing.Data[corev1.TLSCertKey], ca.CertPEM, dnsNames, now, renewBefore)
		if why == "" && bytes.Equal(existing.Data["ca.crt"], ca.CertPEM) {
			s.tlsCAPEM = ca.CertPEM
			return ctrl.Result{}, nil
		}
	}
	log.FromContext(ctx).Info("Issuing the server certificate", "secret", names.TLSSecret, "reason", why)
	kp, err := pki.IssueServerCert(ca, pki.ServerCertRequest{CommonName: names.ClientService + "." + c.Namespace + ".svc", DNSNames: dnsNames, Validity: serverCertValidity}, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: names.TLSSecret, Namespace: c.Namespace, Labels: resources.Labels(c, resources.ComponentServer)},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: kp.CertPEM, corev1.TLSPrivateKeyKey: kp.KeyPEM, "ca.crt": ca.CertPEM},
	}
	if err := r.ensure(ctx, s, secret, func(o client.Object) { o.(*corev1.Secret).Data = secret.Data }); err != nil {
		return ctrl.Result{}, fmt.Errorf("server certificate: %w", err)
	}
	s.tlsCAPEM = ca.CertPEM
	return ctrl.Result{}, nil
}

// ensureCA returns the cluster's CA, creating it once.
func (r *OpenBaoClusterReconciler) ensureCA(ctx context.Context, s *scope, name string) (pki.KeyPair, error) {
	c := s.cluster
	existing := &corev1.Secret{}
	err := r.readOwnSecret(ctx, s, client.ObjectKey{Namespace: c.Namespace, Name: name}, existing)
	if err == nil {
		kp := pki.KeyPair{CertPEM: existing.Data[corev1.TLSCertKey], KeyPEM: existing.Data[corev1.TLSPrivateKeyKey]}
		if _, perr := pki.ParseCertificate(kp.CertPEM); perr != nil {
			return pki.KeyPair{}, fmt.Errorf("CA Secret %s is damaged (%v): delete it to have a new CA issued", name, perr)
		}
		return kp, nil
	}
	if !apierrors.IsNotFound(err) {
		return pki.KeyPair{}, err
	}
	kp, err := pki.NewCA(c.Name+"."+c.Namespace+" OpenBao CA", r.Clock.Now(), caValidity)
	if err != nil {
		return pki.KeyPair{}, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: resources.Labels(c, resources.ComponentServer)},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: kp.CertPEM, corev1.TLSPrivateKeyKey: kp.KeyPEM},
	}
	if err := ctrl.SetControllerReference(c, secret, r.Scheme); err != nil {
		return pki.KeyPair{}, err
	}
	log.FromContext(ctx).Info("Creating the cluster CA", "secret", name)
	err = r.Create(ctx, secret)
	r.wrote(secret)
	if err != nil {
		return pki.KeyPair{}, fmt.Errorf("create CA: %w", err)
	}
	return kp, nil
}

// readOwnSecret reads one of the cluster's own Secrets by name from the API server (Secrets
// are never cached: UncachedKinds) and, if it has lost the operator's labels, puts them
// back, so that everything the operator created for a cluster is found by its labels.
// NotFound when it does not exist.
func (r *OpenBaoClusterReconciler) readOwnSecret(ctx context.Context, s *scope, key client.ObjectKey, secret *corev1.Secret) error {
	if err := (secretReader{r}).Get(ctx, key, secret); err != nil {
		return err
	}
	want := resources.Labels(s.cluster, resources.ComponentServer)
	if secret.Labels[resources.LabelManagedBy] == want[resources.LabelManagedBy] && secret.Labels[resources.LabelCluster] == want[resources.LabelCluster] {
		return nil
	}
	before := secret.DeepCopy()
	secret.Labels = mergeMaps(secret.Labels, want)
	log.FromContext(ctx).Info("Restoring the operator's labels", "secret", key.Name)
	err := r.Patch(ctx, secret, client.MergeFrom(before))
	r.wrote(secret)
	if err != nil {
		return fmt.Errorf("label secret %s: %w", key.Name, err)
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }
