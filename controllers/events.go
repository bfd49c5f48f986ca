package controllers

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/record"
)

// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// EventComponent is the source of the operator's events.
const EventComponent = "openbao-operator"

// NewEventRecorder returns the recorder of the operator's events and a function that
// flushes and stops it. Events are written through the core/v1 Event API, which sets
// firstTimestamp, lastTimestamp and count: `kubectl get events --sort-by=.lastTimestamp`
// (and every tool that sorts by it) then places them where they happened. An event of the
// events.k8s.io API carries only eventTime, and its core/v1 view an empty lastTimestamp,
// which such a sort puts before every other event.
func NewEventRecorder(kube kubernetes.Interface, scheme *runtime.Scheme) (events.EventRecorder, func()) {
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	rec := broadcaster.NewRecorder(scheme, corev1.EventSource{Component: EventComponent})
	return coreEventRecorder{rec}, broadcaster.Shutdown
}

// coreEventRecorder offers the events.k8s.io recorder's interface on top of a core/v1
// recorder. A core/v1 Event has no action and no related object: they are dropped.
type coreEventRecorder struct{ rec record.EventRecorder }

func (r coreEventRecorder) Eventf(regarding, _ runtime.Object, eventtype, reason, _, note string, args ...any) {
	if len(args) > 0 {
		note = fmt.Sprintf(note, args...)
	}
	r.rec.Event(regarding, eventtype, reason, note)
}
