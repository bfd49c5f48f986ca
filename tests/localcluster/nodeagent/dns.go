package nodeagent

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const dnsTTL = 5

// dnsServer answers cluster DNS names from the API objects the agent
// watches. It never forwards: any other name is NXDOMAIN.
type dnsServer struct {
	a    *agent
	udp  *net.UDPConn
	tcp  net.Listener
	wg   sync.WaitGroup
	once sync.Once
}

func (a *agent) startDNS() (*dnsServer, error) {
	addr := net.JoinHostPort(a.hostIP(), "53")
	var (
		udp *net.UDPConn
		err error
	)
	// The gateway address can take a moment to become usable after the
	// bridge comes up.
	for i := 0; i < 50; i++ {
		var ua *net.UDPAddr
		if ua, err = net.ResolveUDPAddr("udp", addr); err == nil {
			if udp, err = net.ListenUDP("udp", ua); err == nil {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		udp.Close()
		return nil, err
	}
	s := &dnsServer{a: a, udp: udp, tcp: tcp}
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	return s, nil
}

func (s *dnsServer) stop() {
	s.once.Do(func() {
		s.udp.Close()
		s.tcp.Close()
		s.wg.Wait()
	})
}

func (s *dnsServer) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := s.udp.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if resp := s.a.answerDNS(buf[:n], 512); resp != nil {
			_, _ = s.udp.WriteToUDP(resp, from)
		}
	}
}

func (s *dnsServer) serveTCP() {
	defer s.wg.Done()
	for {
		conn, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go func() {
			defer conn.Close()
			for {
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				var l [2]byte
				if _, err := io.ReadFull(conn, l[:]); err != nil {
					return
				}
				msg := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(conn, msg); err != nil {
					return
				}
				resp := s.a.answerDNS(msg, 65535)
				if resp == nil {
					return
				}
				out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
				if _, err := conn.Write(append(out, resp...)); err != nil {
					return
				}
			}
		}()
	}
}

// answerDNS builds the response to one query message.
func (a *agent) answerDNS(req []byte, maxSize int) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	resp := dnsmessage.Message{Header: dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired},
		Questions: []dnsmessage.Question{q}}
	name := strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))
	ips, known := a.lookupName(name)
	switch {
	case !known:
		resp.RCode = dnsmessage.RCodeNameError
	case q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL:
		for _, ip := range ips {
			resp.Answers = append(resp.Answers, dnsmessage.Resource{
				Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: dnsTTL},
				Body:   &dnsmessage.AResource{A: ip.As4()},
			})
		}
	}
	out, err := resp.Pack()
	if err != nil {
		return nil
	}
	if len(out) > maxSize {
		resp.Answers = nil
		resp.Truncated = true
		out, _ = resp.Pack()
	}
	return out
}

// lookupName resolves a name under the cluster domain:
//
//	<svc>.<ns>.svc.<domain>                     clusterIP, or ready pod IPs of a headless service
//	<hostname>.<subdomain>.<ns>.svc.<domain>    the pod with that hostname and subdomain
//	<a-b-c-d>.<ns>.pod.<domain>                 that address
//
// known is false for a name that does not exist (NXDOMAIN).
func (a *agent) lookupName(name string) (ips []netip.Addr, known bool) {
	domain := strings.ToLower(a.cfg.ClusterDomain)
	rest, ok := strings.CutSuffix(name, "."+domain)
	if !ok {
		return nil, false
	}
	if podPart, ok := strings.CutSuffix(rest, ".pod"); ok {
		labels := strings.Split(podPart, ".")
		if len(labels) != 2 {
			return nil, false
		}
		ip, err := netip.ParseAddr(strings.ReplaceAll(labels[0], "-", "."))
		if err != nil || !ip.Is4() {
			return nil, false
		}
		return []netip.Addr{ip}, true
	}
	svcPart, ok := strings.CutSuffix(rest, ".svc")
	if !ok {
		return nil, false
	}
	parts := strings.Split(svcPart, ".")
	switch len(parts) {
	case 2:
		return a.serviceIPs(parts[1], parts[0])
	case 3:
		return a.podHostIPs(parts[2], parts[1], parts[0])
	}
	return nil, false
}

func (a *agent) serviceIPs(ns, name string) ([]netip.Addr, bool) {
	if ns == "default" && name == "kubernetes" {
		// There is no service proxy: the API server is reached directly.
		if ip, err := netip.ParseAddr(a.cfg.APIServerHost); err == nil {
			return []netip.Addr{ip}, true
		}
	}
	svc, err := a.services.Services(ns).Get(name)
	if err != nil {
		return nil, false
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, true
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil {
			return nil, true
		}
		return []netip.Addr{ip}, true
	}
	var ips []netip.Addr
	for _, pod := range a.servicePods(svc) {
		if ip, err := netip.ParseAddr(pod.Status.PodIP); err == nil {
			ips = append(ips, ip)
		}
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
	return ips, true
}

// servicePods lists the pods a headless service publishes: selected,
// running with an address, not terminating, ready unless the service
// publishes not-ready addresses.
func (a *agent) servicePods(svc *corev1.Service) []*corev1.Pod {
	if len(svc.Spec.Selector) == 0 {
		return nil
	}
	pods, _ := a.pods.Pods(svc.Namespace).List(labels.SelectorFromSet(svc.Spec.Selector))
	var out []*corev1.Pod
	for _, pod := range pods {
		if pod.Status.PodIP == "" || pod.DeletionTimestamp != nil ||
			pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if !svc.Spec.PublishNotReadyAddresses && !podReady(pod) {
			continue
		}
		out = append(out, pod)
	}
	return out
}

func (a *agent) podHostIPs(ns, subdomain, host string) ([]netip.Addr, bool) {
	svc, err := a.services.Services(ns).Get(subdomain)
	if err != nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		return nil, false
	}
	for _, pod := range a.servicePods(svc) {
		if pod.Spec.Hostname == host && pod.Spec.Subdomain == subdomain {
			if ip, err := netip.ParseAddr(pod.Status.PodIP); err == nil {
				return []netip.Addr{ip}, true
			}
		}
	}
	return nil, false
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
