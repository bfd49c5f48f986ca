package nodeagent

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// ownedConditions are the pod conditions the kubelet sets; others
// (PodScheduled, DisruptionTarget, readiness gates) are kept as they are.
var ownedConditions = []corev1.PodConditionType{
	corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady,
}

// pushStatus writes the pod's status when it changed.
func (w *podWorker) pushStatus(ctx context.Context, pod *corev1.Pod) {
	w.mu.Lock()
	if w.frozen {
		w.mu.Unlock()
		return
	}
	st := w.buildStatus(pod)
	w.mu.Unlock()
	if w.lastSent != nil && apiequality.Semantic.DeepEqual(*w.lastSent, st) {
		return
	}
	cur := pod
	for attempt := 0; attempt < 3; attempt++ {
		upd := cur.DeepCopy()
		mergeStatus(&upd.Status, &st)
		_, err := w.agent.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
		if err == nil {
			w.lastSent = &st
			return
		}
		if !apierrors.IsConflict(err) {
			if ctx.Err() == nil && !apierrors.IsNotFound(err) {
				klog.InfoS("Pod status update failed", "pod", klog.KObj(pod), "err", err)
			}
			return
		}
		cur, err = w.agent.cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || cur.UID != pod.UID {
			return
		}
	}
}

func mergeStatus(dst, src *corev1.PodStatus) {
	var conds []corev1.PodCondition
	for _, c := range dst.Conditions {
		owned := false
		for _, t := range ownedConditions {
			owned = owned || c.Type == t
		}
		if !owned {
			conds = append(conds, c)
		}
	}
	for _, c := range src.Conditions {
		for _, o := range dst.Conditions {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		conds = append(conds, c)
	}
	qos := dst.QOSClass
	startTime := dst.StartTime
	*dst = *src.DeepCopy()
	dst.Conditions = conds
	dst.QOSClass = qos
	if dst.StartTime == nil {
		dst.StartTime = startTime
	}
}

// buildStatus computes the pod status the kubelet would report (w.mu held).
func (w *podWorker) buildStatus(pod *corev1.Pod) corev1.PodStatus {
	st := corev1.PodStatus{HostIP: w.agent.hostIP(), HostIPs: []corev1.HostIP{{IP: w.agent.hostIP()}}}
	if ip := w.podIP(); ip != "" {
		st.PodIP = ip
		st.PodIPs = []corev1.PodIP{{IP: ip}}
	}
	if !w.startAt.IsZero() {
		st.StartTime = ptr.To(w.startAt)
	}
	initsDone := w.initialized
	var incompleteInit, unready []string
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		s := w.ctrs[c.Name]
		cs := w.containerStatus(c, s, "PodInitializing")
		if isSidecar(c) {
			if !cs.Ready {
				unready = append(unready, c.Name)
			}
		} else if s == nil || s.running || s.lastTerm == nil || s.lastTerm.ExitCode != 0 {
			incompleteInit = append(incompleteInit, c.Name)
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	anyRunning, anyTerminated := false, false
	mainWaiting := "ContainerCreating"
	if !initsDone {
		mainWaiting = "PodInitializing"
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		s := w.ctrs[c.Name]
		cs := w.containerStatus(c, s, mainWaiting)
		if s != nil && s.running {
			anyRunning = true
		}
		if s != nil && s.lastTerm != nil {
			anyTerminated = true
		}
		if !cs.Ready {
			unready = append(unready, c.Name)
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}

	switch {
	case w.terminal != "":
		st.Phase = w.terminal
	case !initsDone:
		st.Phase = corev1.PodPending
	case anyRunning:
		st.Phase = corev1.PodRunning
	case anyTerminated && pod.Spec.RestartPolicy != corev1.RestartPolicyNever:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}

	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()}
		if ok {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, "", ""
		}
		return c
	}
	ready := len(unready) == 0 && w.terminal == ""
	readyReason, readyMsg := "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if w.terminal != "" {
		readyReason, readyMsg = "PodCompleted", ""
	}
	podReady := ready
	podReadyReason, podReadyMsg := readyReason, readyMsg
	for _, g := range pod.Spec.ReadinessGates {
		found := false
		for _, c := range pod.Status.Conditions {
			if c.Type == g.ConditionType && c.Status == corev1.ConditionTrue {
				found = true
			}
		}
		if !found && ready {
			podReady = false
			podReadyReason, podReadyMsg = "ReadinessGatesNotReady", fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", g.ConditionType)
		}
	}
	initReason, initMsg := "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(incompleteInit, " "))
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, w.sandbox, "", ""),
		cond(corev1.PodInitialized, initsDone || (w.terminal == corev1.PodSucceeded), initReason, initMsg),
		cond(corev1.ContainersReady, ready, readyReason, readyMsg),
		cond(corev1.PodReady, podReady, podReadyReason, podReadyMsg),
	}
	if w.mountErr != "" {
		st.Message = w.mountErr
	}
	// The transition times come from the previous report so an unchanged
	// condition keeps its time (and equal statuses compare equal).
	if w.lastSent != nil {
		for i, c := range st.Conditions {
			for _, o := range w.lastSent.Conditions {
				if o.Type == c.Type && o.Status == c.Status {
					st.Conditions[i].LastTransitionTime = o.LastTransitionTime
				}
			}
		}
	}
	return st
}

func (w *podWorker) containerStatus(c *corev1.Container, s *ctrState, defaultWaiting string) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: ptr.To(false)}
	if s == nil {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: defaultWaiting}
		return cs
	}
	cs.RestartCount = s.restartCount
	cs.ImageID = s.imageID
	cs.ContainerID = s.containerID
	switch {
	case s.running:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(s.startedAt)}
		cs.LastTerminationState.Terminated = s.prevTerm
		cs.Ready = s.ready
		cs.Started = ptr.To(s.started)
	case s.waitingReason != "":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: s.waitingReason, Message: s.waitingMessage}
		cs.LastTerminationState.Terminated = s.lastTerm
		if s.lastTerm == nil {
			cs.LastTerminationState.Terminated = s.prevTerm
		}
	case s.lastTerm != nil:
		cs.State.Terminated = s.lastTerm
		cs.LastTerminationState.Terminated = s.prevTerm
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: defaultWaiting}
	}
	return cs
}
