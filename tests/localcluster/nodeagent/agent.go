// Package nodeagent plays the kubelet (and the scheduler) for one Node of a
// local cluster that has a real control plane but no container runtime.
//
// Each pod gets a network namespace with one address on a bridge the agent
// owns; each container is an ordinary process started from the executable
// its image resolves to (see ImageResolver), in the pod's network namespace
// and its own mount namespace where the host's directories are visible
// read-only and the pod's volumes are bind-mounted at their mount paths.
// The agent also serves cluster DNS and the kubelet's container-log API on
// the bridge's gateway address and provisions folder-backed
// PersistentVolumes for the `local-dir` StorageClass.
//
// Files under Config.StateDir:
//
//	agent.json                                  bridge and CIDR, read by Cleanup
//	pods/<pod UID>/                             volumes, hosts, resolv.conf, /tmp of a pod
//	logs/<namespace>_<pod>_<pod UID>/<container>/<restartCount>.log
//	                                            stdout and stderr of each container run (kept after the pod is gone)
//	logs/<namespace>_<pod>_<pod UID>/<container>/<restartCount>.idx
//	                                            where each line of that run starts and when it was read
//	pv/<PersistentVolume name>/                 the folder of a provisioned claim
package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// Config configures the agent.
type Config struct {
	// RESTConfig reaches the API server with rights to manage nodes, leases,
	// pods, pod bindings, service account tokens, storage classes and
	// persistent volumes (cluster-admin in practice).
	RESTConfig *rest.Config
	// NodeName is the Node the agent registers and runs pods for.
	NodeName string
	// StateDir holds per-pod folders, volumes, logs and claim folders.
	StateDir string
	// BridgeName is the pod network's bridge (at most 11 characters; pod
	// namespaces and veths are named <BridgeName>-<n>).
	BridgeName string
	// CIDR is the pod network, an IPv4 /24; its first address is the
	// gateway, the host side of the bridge.
	CIDR string
	// APIServerHost and APIServerPort are what pods get as
	// KUBERNETES_SERVICE_HOST/PORT. Defaults: the gateway address and the
	// port of RESTConfig.Host (the API server must listen on an address
	// pods reach, such as the gateway, with a certificate valid for it).
	APIServerHost string
	APIServerPort int
	// Images resolves image references to executables.
	Images ImageResolver
	// ClusterDomain defaults to "cluster.local".
	ClusterDomain string
	// KubeletPort is where the agent serves the kubelet API (container
	// logs) on the gateway address, published as the Node's
	// daemonEndpoints.kubeletEndpoint. Default DefaultKubeletPort.
	KubeletPort int
}

const (
	// StorageClassName is the default StorageClass the agent provisions.
	StorageClassName = "local-dir"
	// Provisioner is the StorageClass's provisioner name.
	Provisioner = "nodeagent.openbao-operator.local/local-dir"

	heartbeatInterval = 10 * time.Second
	leaseDuration     = 40
	resyncInterval    = time.Second
	// kubeletVersion is reported in the Node's nodeInfo.
	kubeletVersion = "v1.35.4"
)

type agent struct {
	cfg   Config
	cs    kubernetes.Interface
	net   *network
	caPEM []byte

	pods       corelisters.PodLister
	services   corelisters.ServiceLister
	configMaps corelisters.ConfigMapLister
	secrets    corelisters.SecretLister
	pvcs       corelisters.PersistentVolumeClaimLister
	pvs        corelisters.PersistentVolumeLister

	events record.EventRecorder
	logs   logWriters

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	ipUsed  map[int]types.UID
	ipNext  int
	wg      sync.WaitGroup
}

type agentState struct {
	Bridge string `json:"bridge"`
	CIDR   string `json:"cidr"`
}

// Run registers the Node and runs its pods until ctx is done; then it stops
// every pod's processes and removes the network namespaces, and the bridge
// if Run created it (a bridge made with EnsureBridge before Run is left for
// DeleteBridge). Pod objects are left as they are, as when a kubelet stops.
func Run(ctx context.Context, c Config) error {
	if c.RESTConfig == nil || c.NodeName == "" || c.StateDir == "" || c.Images == nil {
		return errors.New("nodeagent: RESTConfig, NodeName, StateDir and Images are required")
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.KubeletPort == 0 {
		c.KubeletPort = DefaultKubeletPort
	}
	dir, err := filepath.Abs(c.StateDir)
	if err != nil {
		return err
	}
	c.StateDir = dir
	n, err := newNetwork(c.BridgeName, c.CIDR)
	if err != nil {
		return err
	}
	if c.APIServerHost == "" {
		c.APIServerHost = n.gateway.String()
	}
	if c.APIServerPort == 0 {
		c.APIServerPort = 443
		if u, err := url.Parse(c.RESTConfig.Host); err == nil && u.Port() != "" {
			c.APIServerPort, _ = strconv.Atoi(u.Port())
		}
	}
	for _, sub := range []string{"pods", "logs", "pv"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	state, _ := json.Marshal(agentState{Bridge: c.BridgeName, CIDR: c.CIDR})
	if err := os.WriteFile(filepath.Join(dir, "agent.json"), state, 0o644); err != nil {
		return err
	}
	// Whatever a previous run left (it may have crashed) goes first: no
	// process survives a restart of the agent, pods are started again.
	cleanupNetwork(c.BridgeName, false)
	// A bridge made beforehand (EnsureBridge) may carry the API server's
	// address: only a bridge this run created is removed at the end.
	_, statErr := os.Stat(filepath.Join("/sys/class/net", c.BridgeName))
	if err := n.ensureBridge(); err != nil {
		return err
	}
	if statErr != nil {
		defer func() { _ = n.deleteBridge() }()
	}

	cs, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		return err
	}
	a := &agent{cfg: c, cs: cs, net: n, workers: map[types.UID]*podWorker{}, ipUsed: map[int]types.UID{}}
	a.caPEM = c.RESTConfig.CAData
	if len(a.caPEM) == 0 && c.RESTConfig.CAFile != "" {
		a.caPEM, _ = os.ReadFile(c.RESTConfig.CAFile)
	}

	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	a.events = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: c.NodeName})

	factory := informers.NewSharedInformerFactory(cs, 0)
	podInformer := factory.Core().V1().Pods()
	a.pods = podInformer.Lister()
	a.services = factory.Core().V1().Services().Lister()
	a.configMaps = factory.Core().V1().ConfigMaps().Lister()
	a.secrets = factory.Core().V1().Secrets().Lister()
	a.pvcs = factory.Core().V1().PersistentVolumeClaims().Lister()
	a.pvs = factory.Core().V1().PersistentVolumes().Lister()
	_, _ = podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.podChanged(obj) },
		UpdateFunc: func(_, obj any) { a.podChanged(obj) },
	})
	informerCtx, stopInformers := context.WithCancel(context.Background())
	defer stopInformers()
	factory.Start(informerCtx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("nodeagent: cache of %v did not sync", typ)
		}
	}

	if err := a.ensureStorageClass(ctx); err != nil {
		return err
	}
	stopKubelet, err := a.startKubeletServer(ctx)
	if err != nil {
		return err
	}
	defer stopKubelet()
	if err := a.registerNode(ctx); err != nil {
		return err
	}
	a.removeOrphans()
	dns, err := a.startDNS()
	if err != nil {
		return err
	}
	defer dns.stop()

	loops := []func(context.Context){a.heartbeatLoop, a.scheduleLoop, a.provisionLoop, a.resyncLoop}
	var loopWG sync.WaitGroup
	for _, loop := range loops {
		loopWG.Add(1)
		go func() { defer loopWG.Done(); loop(ctx) }()
	}
	<-ctx.Done()
	loopWG.Wait()
	// Workers see ctx done and stop their pods.
	a.wg.Wait()
	cleanupNetwork(c.BridgeName, false)
	return nil
}

// Cleanup removes what a crashed run left behind in the host: the pods'
// processes, network namespaces, veths and the bridge recorded in
// stateDir/agent.json. Folders under stateDir are kept.
func Cleanup(stateDir string) error {
	data, err := os.ReadFile(filepath.Join(stateDir, "agent.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st agentState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("read %s: %w", filepath.Join(stateDir, "agent.json"), err)
	}
	if st.Bridge == "" {
		return nil
	}
	cleanupNetwork(st.Bridge, true)
	return nil
}

// CleanupBridge removes every pod network namespace named after bridge
// (killing the processes in them), their veths and the bridge itself: what a
// run that was killed left on that bridge. Only its owner may call it.
func CleanupBridge(bridge string) error {
	cleanupNetwork(bridge, true)
	var left []string
	left = append(left, ownedNetns(bridge)...)
	left = append(left, ownedVeths(bridge)...)
	if _, err := os.Stat(filepath.Join("/sys/class/net", bridge)); err == nil {
		left = append(left, bridge)
	}
	if len(left) > 0 {
		return fmt.Errorf("still present after cleanup: %s", strings.Join(left, ", "))
	}
	return nil
}

// cleanupNetwork kills every process in the bridge's pod namespaces and
// deletes the namespaces, stray veths and, if withBridge, the bridge.
func cleanupNetwork(bridge string, withBridge bool) {
	for _, name := range ownedNetns(bridge) {
		_ = deleteNetns(name)
	}
	for _, name := range ownedVeths(bridge) {
		_ = ip("link", "del", name)
	}
	if withBridge {
		if _, err := os.Stat(filepath.Join("/sys/class/net", bridge)); err == nil {
			_ = ip("link", "del", bridge)
		}
	}
}

func (a *agent) hostIP() string { return a.net.gateway.String() }

func (a *agent) capacity() corev1.ResourceList {
	mem := int64(8 << 30)
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					mem = kb * 1024
				}
			}
		}
	}
	return corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(mem, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(250, resource.DecimalSI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(100<<30, resource.BinarySI),
	}
}

func (a *agent) nodeStatus(now metav1.Time, old *corev1.NodeStatus) corev1.NodeStatus {
	conds := []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "node agent is posting ready status"},
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID"},
	}
	for i := range conds {
		conds[i].LastHeartbeatTime = now
		conds[i].LastTransitionTime = now
		if old != nil {
			for _, o := range old.Conditions {
				if o.Type == conds[i].Type && o.Status == conds[i].Status {
					conds[i].LastTransitionTime = o.LastTransitionTime
				}
			}
		}
	}
	capacity := a.capacity()
	return corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		DaemonEndpoints: corev1.NodeDaemonEndpoints{
			KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(a.cfg.KubeletPort)},
		},
		Conditions: conds,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: a.hostIP()},
			{Type: corev1.NodeHostName, Address: a.cfg.NodeName},
		},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          kubeletVersion,
			OperatingSystem:         "linux",
			Architecture:            runtime.GOARCH,
			ContainerRuntimeVersion: "nodeagent://1",
		},
	}
}

func (a *agent) registerNode(ctx context.Context) error {
	now := metav1.Now()
	node, err := a.cs.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node = &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: a.cfg.NodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname": a.cfg.NodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     runtime.GOARCH,
			},
		}}
		if node, err = a.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("register node %s: %w", a.cfg.NodeName, err)
		}
	} else if err != nil {
		return fmt.Errorf("get node %s: %w", a.cfg.NodeName, err)
	}
	node.Status = a.nodeStatus(now, nil)
	if _, err := a.cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update node %s status: %w", a.cfg.NodeName, err)
	}
	return a.renewLease(ctx, node)
}

func (a *agent) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(heartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		node, err := a.cs.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				_ = a.registerNode(ctx)
			}
			continue
		}
		node.Status = a.nodeStatus(metav1.Now(), &node.Status)
		if _, err := a.cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
			klog.V(2).InfoS("Node heartbeat failed", "node", a.cfg.NodeName, "err", err)
		}
		_ = a.renewLease(ctx, node)
	}
}

func (a *agent) renewLease(ctx context.Context, node *corev1.Node) error {
	leases := a.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(a.cfg.NodeName), LeaseDurationSeconds: ptr.To[int32](leaseDuration), RenewTime: &now},
		}
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec.HolderIdentity = ptr.To(a.cfg.NodeName)
	lease.Spec.LeaseDurationSeconds = ptr.To[int32](leaseDuration)
	lease.Spec.RenewTime = &now
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

// scheduleLoop binds every pending, unscheduled pod to this node once the
// claims it uses are bound (as the scheduler does for Immediate binding).
func (a *agent) scheduleLoop(ctx context.Context) {
	t := time.NewTicker(resyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pods, _ := a.pods.List(labels.Everything())
		for _, pod := range pods {
			if pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil || len(pod.Spec.SchedulingGates) > 0 ||
				pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
				continue
			}
			if !a.claimsBound(pod) {
				continue
			}
			binding := &corev1.Binding{
				ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
				Target:     corev1.ObjectReference{Kind: "Node", Name: a.cfg.NodeName},
			}
			err := a.cs.CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{})
			switch {
			case err == nil:
				a.events.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, a.cfg.NodeName)
			case ctx.Err() == nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err):
				klog.InfoS("Bind failed", "pod", klog.KObj(pod), "err", err)
			}
		}
	}
}

func (a *agent) claimsBound(pod *corev1.Pod) bool {
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, err := a.pvcs.PersistentVolumeClaims(pod.Namespace).Get(v.PersistentVolumeClaim.ClaimName)
		if err != nil || pvc.Status.Phase != corev1.ClaimBound {
			return false
		}
	}
	return true
}

func (a *agent) podChanged(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != a.cfg.NodeName {
		return
	}
	a.mu.Lock()
	w := a.workers[pod.UID]
	a.mu.Unlock()
	if w != nil {
		w.update(pod)
	}
}

// resyncLoop starts a worker for each pod bound to this node and tells
// workers whose pod vanished (force-deleted) to stop.
func (a *agent) resyncLoop(ctx context.Context) {
	t := time.NewTicker(resyncInterval)
	defer t.Stop()
	for {
		pods, _ := a.pods.List(labels.Everything())
		seen := map[types.UID]bool{}
		for _, pod := range pods {
			if pod.Spec.NodeName != a.cfg.NodeName {
				continue
			}
			seen[pod.UID] = true
			a.mu.Lock()
			w := a.workers[pod.UID]
			if w == nil {
				w = newPodWorker(a, pod)
				a.workers[pod.UID] = w
				a.wg.Add(1)
				go func() { defer a.wg.Done(); w.run(ctx) }()
			}
			a.mu.Unlock()
			w.update(pod)
		}
		a.mu.Lock()
		for uid, w := range a.workers {
			if !seen[uid] {
				w.vanished()
				if w.finished() {
					delete(a.workers, uid)
				}
			}
		}
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// allocateIP reserves an address index (last octet) for the pod, keeping
// want when it is free.
func (a *agent) allocateIP(uid types.UID, want int) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if want >= 2 && want <= 254 {
		if owner, ok := a.ipUsed[want]; !ok || owner == uid {
			a.ipUsed[want] = uid
			return want, nil
		}
	}
	// Round robin: an address freed by a deleted pod is taken again as late
	// as possible, so no pod keeps talking to a stale neighbour entry.
	for n := 0; n < 253; n++ {
		i := 2 + (a.ipNext+n)%253
		if _, ok := a.ipUsed[i]; !ok {
			a.ipUsed[i] = uid
			a.ipNext = i - 1
			return i, nil
		}
	}
	return 0, errNoAddress
}

func (a *agent) releaseIP(uid types.UID, idx int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ipUsed[idx] == uid {
		delete(a.ipUsed, idx)
	}
}

// removeOrphans deletes the folders of pods that no longer exist on this
// node (deleted while the agent was down). Their processes and network
// namespaces are already gone (see Run).
func (a *agent) removeOrphans() {
	entries, _ := os.ReadDir(filepath.Join(a.cfg.StateDir, "pods"))
	pods, _ := a.pods.List(labels.Everything())
	live := map[string]bool{}
	for _, p := range pods {
		if p.Spec.NodeName == a.cfg.NodeName {
			live[string(p.UID)] = true
		}
	}
	var removed []string
	for _, e := range entries {
		if !live[e.Name()] {
			_ = os.RemoveAll(filepath.Join(a.cfg.StateDir, "pods", e.Name()))
			removed = append(removed, e.Name())
		}
	}
	sort.Strings(removed)
	if len(removed) > 0 {
		klog.InfoS("Removed folders of pods deleted while the agent was down", "uids", removed)
	}
}
