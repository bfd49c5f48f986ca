package nodeagent

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// expand replaces $(VAR) references as the kubelet does: defined names are
// replaced, $$ escapes a dollar, anything else is kept as written.
func expand(input string, lookup func(string) (string, bool)) string {
	var buf strings.Builder
	checkpoint := 0
	for cursor := 0; cursor < len(input); cursor++ {
		if input[cursor] != '$' || cursor+1 >= len(input) {
			continue
		}
		buf.WriteString(input[checkpoint:cursor])
		rest := input[cursor+1:]
		switch rest[0] {
		case '$':
			buf.WriteByte('$')
			cursor++
		case '(':
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				buf.WriteString("$(")
				cursor++
				break
			}
			name := rest[1:end]
			if v, ok := lookup(name); ok {
				buf.WriteString(v)
			} else {
				buf.WriteString("$(" + name + ")")
			}
			cursor += end + 1
		default:
			buf.WriteString("$" + rest[:1])
			cursor++
		}
		checkpoint = cursor + 1
	}
	buf.WriteString(input[checkpoint:])
	return buf.String()
}

// envList keeps environment variables in definition order; a redefinition
// replaces the value in place.
type envList struct {
	names  []string
	values map[string]string
}

func (e *envList) set(name, value string) {
	if e.values == nil {
		e.values = map[string]string{}
	}
	if _, ok := e.values[name]; !ok {
		e.names = append(e.names, name)
	}
	e.values[name] = value
}

func (e *envList) lookup(name string) (string, bool) {
	v, ok := e.values[name]
	return v, ok
}

func (e *envList) list() []string {
	out := make([]string, 0, len(e.names))
	for _, n := range e.names {
		out = append(out, n+"="+e.values[n])
	}
	return out
}

// configError is a container configuration problem the kubelet reports as
// CreateContainerConfigError (a missing Secret or key, for example).
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// containerEnv computes the container's environment: image env, the API
// server's service variables, envFrom, then env with $(VAR) expansion.
func (a *agent) containerEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container, img Image, podIP string) (*envList, error) {
	env := &envList{}
	env.set("PATH", DefaultPath)
	for _, kv := range img.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env.set(k, v)
		}
	}
	env.set("HOSTNAME", podHostname(pod))
	service := &envList{}
	host, port := a.cfg.APIServerHost, strconv.Itoa(a.cfg.APIServerPort)
	service.set("KUBERNETES_SERVICE_HOST", host)
	service.set("KUBERNETES_SERVICE_PORT", port)
	service.set("KUBERNETES_SERVICE_PORT_HTTPS", port)
	service.set("KUBERNETES_PORT", "tcp://"+host+":"+port)
	service.set("KUBERNETES_PORT_"+port+"_TCP", "tcp://"+host+":"+port)
	service.set("KUBERNETES_PORT_"+port+"_TCP_PROTO", "tcp")
	service.set("KUBERNETES_PORT_"+port+"_TCP_PORT", port)
	service.set("KUBERNETES_PORT_"+port+"_TCP_ADDR", host)
	if pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks {
		if err := a.serviceLinkEnv(ctx, pod.Namespace, service); err != nil {
			return nil, err
		}
	}
	own := &envList{}
	for _, n := range service.names {
		own.set(n, service.values[n])
	}
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := a.getConfigMap(ctx, pod.Namespace, from.ConfigMapRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
					continue
				}
				return nil, &configError{fmt.Sprintf("configmap %q not found", from.ConfigMapRef.Name)}
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := a.getSecret(ctx, pod.Namespace, from.SecretRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && from.SecretRef.Optional != nil && *from.SecretRef.Optional {
					continue
				}
				return nil, &configError{fmt.Sprintf("secret %q not found", from.SecretRef.Name)}
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		for k, v := range data {
			own.set(from.Prefix+k, v)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			own.set(e.Name, expand(e.Value, own.lookup))
			continue
		}
		v, skip, err := a.envValueFrom(ctx, pod, c, e.ValueFrom, podIP)
		if err != nil {
			return nil, err
		}
		if !skip {
			own.set(e.Name, v)
		}
	}
	for _, n := range own.names {
		env.set(n, own.values[n])
	}
	return env, nil
}

// serviceLinkEnv adds the Docker-link style variables the kubelet sets for
// every service with a cluster IP in the pod's namespace
// (<NAME>_SERVICE_HOST, <NAME>_PORT_<port>_TCP, ...). The services are read
// from the API server, not the cache, so a service created just before the
// pod is always seen.
func (a *agent) serviceLinkEnv(ctx context.Context, ns string, env *envList) error {
	list, err := a.cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list services for the environment: %w", err)
	}
	services := list.Items
	sort.Slice(services, func(i, j int) bool { return services[i].Name < services[j].Name })
	for _, svc := range services {
		ip := svc.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone || len(svc.Spec.Ports) == 0 {
			continue
		}
		if ns == metav1.NamespaceDefault && svc.Name == "kubernetes" {
			continue
		}
		name := strings.ToUpper(strings.ReplaceAll(svc.Name, "-", "_"))
		first := svc.Spec.Ports[0]
		env.set(name+"_SERVICE_HOST", ip)
		env.set(name+"_SERVICE_PORT", strconv.Itoa(int(first.Port)))
		for _, p := range svc.Spec.Ports {
			if p.Name != "" {
				env.set(name+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")), strconv.Itoa(int(p.Port)))
			}
		}
		proto := strings.ToLower(string(first.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		env.set(name+"_PORT", fmt.Sprintf("%s://%s:%d", proto, ip, first.Port))
		for _, p := range svc.Spec.Ports {
			proto := strings.ToLower(string(p.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			prefix := fmt.Sprintf("%s_PORT_%d_%s", name, p.Port, strings.ToUpper(proto))
			env.set(prefix, fmt.Sprintf("%s://%s:%d", proto, ip, p.Port))
			env.set(prefix+"_PROTO", proto)
			env.set(prefix+"_PORT", strconv.Itoa(int(p.Port)))
			env.set(prefix+"_ADDR", ip)
		}
	}
	return nil
}

func (a *agent) envValueFrom(ctx context.Context, pod *corev1.Pod, c *corev1.Container, from *corev1.EnvVarSource, podIP string) (string, bool, error) {
	switch {
	case from.FieldRef != nil:
		v, err := podFieldValue(pod, from.FieldRef.FieldPath, podIP, a.hostIP())
		if err != nil {
			return "", false, &configError{err.Error()}
		}
		return v, false, nil
	case from.ResourceFieldRef != nil:
		v, err := a.resourceFieldValue(pod, c, from.ResourceFieldRef)
		return v, false, err
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		optional := ref.Optional != nil && *ref.Optional
		cm, err := a.getConfigMap(ctx, pod.Namespace, ref.Name)
		if err != nil {
			if optional && apierrors.IsNotFound(err) {
				return "", true, nil
			}
			return "", false, &configError{fmt.Sprintf("configmap %q not found", ref.Name)}
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if optional {
				return "", true, nil
			}
			return "", false, &configError{fmt.Sprintf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)}
		}
		return v, false, nil
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		optional := ref.Optional != nil && *ref.Optional
		s, err := a.getSecret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			if optional && apierrors.IsNotFound(err) {
				return "", true, nil
			}
			return "", false, &configError{fmt.Sprintf("secret %q not found", ref.Name)}
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if optional {
				return "", true, nil
			}
			return "", false, &configError{fmt.Sprintf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)}
		}
		return string(v), false, nil
	}
	return "", true, nil
}

// podFieldValue resolves a downward API field path.
func podFieldValue(pod *corev1.Pod, path, podIP, hostIP string) (string, error) {
	if k, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(k, "']")], nil
	}
	if k, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(k, "']")], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return podIP, nil
	case "status.hostIP", "status.hostIPs":
		return hostIP, nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

// formatMap renders labels or annotations as the downward API does:
// sorted `key="value"` lines.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%s", k, strconv.Quote(m[k]))
	}
	return b.String()
}

func (a *agent) resourceFieldValue(pod *corev1.Pod, c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	if ref.ContainerName != "" {
		c = findContainer(pod, ref.ContainerName)
		if c == nil {
			return "", &configError{fmt.Sprintf("container %q not found", ref.ContainerName)}
		}
	}
	kind, name, _ := strings.Cut(ref.Resource, ".")
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		q = a.capacity()[corev1.ResourceName(name)]
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == "cpu" {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func (a *agent) getConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if cm, err := a.configMaps.ConfigMaps(ns).Get(name); err == nil {
		return cm, nil
	}
	return a.cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (a *agent) getSecret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	if s, err := a.secrets.Secrets(ns).Get(name); err == nil {
		return s, nil
	}
	return a.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}
