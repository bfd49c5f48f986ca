package nodeagent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// netnsDir is where `ip netns add` bind-mounts named network namespaces.
const netnsDir = "/run/netns"

// network is the pod network: one bridge owning a /24, one network
// namespace and veth pair per pod. It never touches other interfaces and
// disables forwarding of packets arriving on the bridge, so pods reach only
// each other and the host's gateway address.
type network struct {
	bridge  string
	prefix  netip.Prefix
	gateway netip.Addr
}

func newNetwork(bridge, cidr string) (*network, error) {
	if bridge == "" || len(bridge) > 11 {
		return nil, fmt.Errorf("bridge name %q must have 1 to 11 characters", bridge)
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("parse CIDR %q: %w", cidr, err)
	}
	if p.Bits() != 24 || !p.Addr().Is4() {
		return nil, fmt.Errorf("CIDR %q must be an IPv4 /24", cidr)
	}
	p = p.Masked()
	return &network{bridge: bridge, prefix: p, gateway: p.Addr().Next()}, nil
}

// Gateway returns the bridge's (host side) address of an IPv4 /24.
func Gateway(cidr string) (string, error) {
	n, err := newNetwork("x", cidr)
	if err != nil {
		return "", err
	}
	return n.gateway.String(), nil
}

// EnsureBridge creates the bridge with the gateway address of cidr (the
// first host address) if it does not exist yet. Run calls it too; call it
// before Run when another process (such as the API server) must listen on
// the gateway address before the agent starts.
func EnsureBridge(bridge, cidr string) error {
	n, err := newNetwork(bridge, cidr)
	if err != nil {
		return err
	}
	return n.ensureBridge()
}

// DeleteBridge removes the bridge if it exists.
func DeleteBridge(bridge string) error {
	if _, err := os.Stat(filepath.Join("/sys/class/net", bridge)); err != nil {
		return nil
	}
	return ip("link", "del", bridge)
}

func (n *network) ensureBridge() error {
	if _, err := os.Stat(filepath.Join("/sys/class/net", n.bridge)); err != nil {
		if err := ip("link", "add", n.bridge, "type", "bridge"); err != nil {
			return err
		}
	}
	// Packets from pods must never leave through the host: no forwarding
	// of anything received on the bridge, whatever the host's ip_forward.
	_ = os.WriteFile(filepath.Join("/proc/sys/net/ipv4/conf", n.bridge, "forwarding"), []byte("0"), 0o644)
	_ = os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", n.bridge, "disable_ipv6"), []byte("1"), 0o644)
	addr := fmt.Sprintf("%s/%d", n.gateway, n.prefix.Bits())
	out, _ := exec.Command("ip", "-o", "-4", "addr", "show", "dev", n.bridge).CombinedOutput()
	if !strings.Contains(string(out), " "+addr+" ") {
		if err := ip("addr", "add", addr, "dev", n.bridge); err != nil {
			return err
		}
	}
	return ip("link", "set", n.bridge, "up")
}

func (n *network) deleteBridge() error {
	if _, err := os.Stat(filepath.Join("/sys/class/net", n.bridge)); err != nil {
		return nil
	}
	return ip("link", "del", n.bridge)
}

// nsName is the network namespace (and host-side veth) name of the pod
// holding address index idx (the last octet).
func (n *network) nsName(idx int) string { return fmt.Sprintf("%s-%d", n.bridge, idx) }

func (n *network) addr(idx int) netip.Addr {
	b := n.prefix.Addr().As4()
	b[3] = byte(idx)
	return netip.AddrFrom4(b)
}

// setupPod creates the pod's network namespace with eth0 on the bridge,
// its address, loopback and a default route via the gateway. It is
// idempotent: an existing namespace is removed and recreated.
func (n *network) setupPod(idx int) error {
	name := n.nsName(idx)
	_ = n.teardownPod(idx)
	// The host may still hold a neighbour entry with the MAC of an earlier
	// pod at this address: packets would go nowhere until it expires.
	_ = ip("neigh", "flush", "to", n.addr(idx).String(), "dev", n.bridge)
	steps := [][]string{
		{"netns", "add", name},
		{"link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", name},
		{"link", "set", name, "master", n.bridge},
		{"link", "set", name, "up"},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "addr", "add", fmt.Sprintf("%s/%d", n.addr(idx), n.prefix.Bits()), "dev", "eth0"},
		{"-n", name, "link", "set", "eth0", "up"},
		{"-n", name, "route", "add", "default", "via", n.gateway.String()},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			_ = n.teardownPod(idx)
			return err
		}
	}
	return nil
}

// teardownPod kills every process left in the pod's network namespace and
// deletes the namespace (which deletes the veth pair).
func (n *network) teardownPod(idx int) error {
	return deleteNetns(n.nsName(idx))
}

func deleteNetns(name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err != nil {
		// A host-side veth can outlive a namespace removed by hand.
		if _, err := os.Stat(filepath.Join("/sys/class/net", name)); err == nil {
			_ = ip("link", "del", name)
		}
		return nil
	}
	killNetnsProcesses(name)
	if err := ip("netns", "del", name); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", name)); err == nil {
		_ = ip("link", "del", name)
	}
	return nil
}

// killNetnsProcesses SIGKILLs every process in the named namespace.
func killNetnsProcesses(name string) {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = killPid(pid)
		}
	}
}

// ownedNetns lists the namespaces named after bridge ("<bridge>-<n>").
func ownedNetns(bridge string) []string {
	entries, _ := os.ReadDir(netnsDir)
	var names []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), bridge+"-")
		if _, err := strconv.Atoi(rest); ok && err == nil {
			names = append(names, e.Name())
		}
	}
	return names
}

// ownedVeths lists host-side veths named after bridge.
func ownedVeths(bridge string) []string {
	entries, _ := os.ReadDir("/sys/class/net")
	var names []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), bridge+"-")
		if _, err := strconv.Atoi(rest); ok && err == nil {
			names = append(names, e.Name())
		}
	}
	return names
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

var errNoAddress = errors.New("no free pod address left in the CIDR")
