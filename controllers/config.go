package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// renderConfig renders the OpenBao configuration and, until the cluster is initialized, the
// self-initialization requests. It runs before anything is created: a spec whose
// configuration cannot be rendered (the user's self-initialization requests, mostly) stops
// the pass with Degraded=True InvalidSpec and a Warning event, and nothing of the cluster is
// created or changed.
func (r *OpenBaoClusterReconciler) renderConfig(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	issuer, err := r.Issuer.Issuer(ctx)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("service-account issuer for OpenBao's JWT auth: %w", err)
	}
	params, err := r.configParams(s, issuer)
	if err != nil {
		s.invalidSpec = err.Error()
		return ctrl.Result{}, reconcile.TerminalError(errors.New(s.invalidSpec))
	}
	if _, err := resources.RenderConfig(params); err != nil {
		s.invalidSpec = fmt.Sprintf("The OpenBao configuration cannot be rendered: %v", err)
		return ctrl.Result{}, reconcile.TerminalError(errors.New(s.invalidSpec))
	}
	// The self-initialization requests are given to the first server only until the cluster
	// has been initialized once; from then on no server may ever found a new cluster.
	selfInit := ""
	if !c.Status.Initialized {
		if selfInit, err = resources.RenderSelfInitConfig(params); err != nil {
			s.invalidSpec = fmt.Sprintf("The self-initialization requests cannot be rendered: %v", err)
			return ctrl.Result{}, reconcile.TerminalError(errors.New(s.invalidSpec))
		}
	}
	s.configParams = &params
	s.selfInitConfig = selfInit
	return ctrl.Result{}, nil
}

// configParams gathers what the configuration renderer needs from the spec.
func (r *OpenBaoClusterReconciler) configParams(s *scope, issuer ServiceAccountIssuer) (resources.ConfigParams, error) {
	c := s.cluster
	var requests []resources.InitRequest
	for _, req := range c.Spec.SelfInit {
		data := map[string]any{}
		if req.Data != nil && len(req.Data.Raw) > 0 {
			if err := json.Unmarshal(req.Data.Raw, &data); err != nil {
				return resources.ConfigParams{}, fmt.Errorf("spec.selfInit[%s].data is not a JSON object: %v", req.Name, err)
			}
		}
		op := string(req.Operation)
		if op == "" {
			op = "update"
		}
		requests = append(requests, resources.InitRequest{Name: req.Name, Path: req.Path, Operation: op, Data: data})
	}
	return resources.ClusterConfigParams(c, resources.ClusterConfigInputs{
		Issuer:                 issuer.Issuer,
		IssuerKeysPEM:          issuer.KeysPEM,
		OperatorNamespace:      r.Options.OperatorNamespace,
		OperatorServiceAccount: r.Options.OperatorServiceAccount,
		SelfInit:               requests,
	}), nil
}
