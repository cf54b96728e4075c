// SPDX-License-Identifier: GPL-2.0
/*
 * The network lock of criu-rs: two tc classifiers (clsact ingress and egress, attached
 * through TCX) that drop the packets of locked TCP connections, or every packet of the
 * network namespace, while a process tree is between dump and restore.
 *
 * Userspace (plugins/netlock/src/ebpf.rs) fills the maps:
 *   tuples: the locked connections, as seen from the dumped tree (local = its end);
 *   config: one entry, the mode flags and the packet mark that is never dropped;
 *   stats:  dropped packets per direction (read by tests and logs).
 * The layouts are mirrored in plugins/netlock/src/key.rs.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* config.flags: drop every packet (namespace scope) rather than the listed connections. */
#define NETLOCK_ALL_TRAFFIC 1u
/* config.flags: packets carrying config.mark pass (criu's own, CRIU's SOCCR_MARK). */
#define NETLOCK_ALLOW_MARK 2u

struct netlock_tuple {
	__u32 family;     /* AF_INET or AF_INET6 */
	__u8 local[16];   /* IPv4: the first 4 bytes, the rest zero */
	__u8 remote[16];
	__u16 lport;      /* network byte order */
	__u16 rport;
};

struct netlock_config {
	__u32 flags;
	__u32 mark;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* Shared by every lock of the namespace; allocated as entries come. */
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct netlock_tuple);
	__type(value, __u8);
} tuples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netlock_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* What to do with the packet: pass on to the next program, or drop it. */
static __always_inline int drop(__u32 dir)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &dir);

	if (n)
		__sync_fetch_and_add(n, 1);
	return TC_ACT_SHOT;
}

/* Fills the ports of *t from the TCP header at offset off of the network header. */
static __always_inline int load_ports(struct __sk_buff *skb, __u32 off, struct netlock_tuple *t,
				      int ingress)
{
	__u16 ports[2];

	if (bpf_skb_load_bytes_relative(skb, off, ports, sizeof(ports), BPF_HDR_START_NET))
		return -1;
	/* ports[0] is the source: the remote end on ingress, ours on egress. */
	t->lport = ingress ? ports[1] : ports[0];
	t->rport = ingress ? ports[0] : ports[1];
	return 0;
}

static __always_inline int tuple_of(struct __sk_buff *skb, struct netlock_tuple *t, int ingress)
{
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes_relative(skb, 0, &ip, sizeof(ip), BPF_HDR_START_NET))
			return -1;
		if (ip.protocol != IPPROTO_TCP)
			return -1;
		/* A later fragment carries no TCP header. */
		if (ip.frag_off & bpf_htons(0x1fff))
			return -1;
		t->family = AF_INET;
		__builtin_memcpy(t->local, ingress ? &ip.daddr : &ip.saddr, 4);
		__builtin_memcpy(t->remote, ingress ? &ip.saddr : &ip.daddr, 4);
		return load_ports(skb, (ip.ihl & 0xf) * 4, t, ingress);
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes_relative(skb, 0, &ip6, sizeof(ip6), BPF_HDR_START_NET))
			return -1;
		/* Extension headers before TCP are not walked: such packets pass. */
		if (ip6.nexthdr != IPPROTO_TCP)
			return -1;
		t->family = AF_INET6;
		__builtin_memcpy(t->local, ingress ? &ip6.daddr : &ip6.saddr, 16);
		__builtin_memcpy(t->remote, ingress ? &ip6.saddr : &ip6.daddr, 16);
		return load_ports(skb, sizeof(ip6), t, ingress);
	}
	return -1;
}

static __always_inline int classify(struct __sk_buff *skb, int ingress)
{
	__u32 zero = 0;
	struct netlock_config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct netlock_tuple t = {};

	if (!cfg)
		return TC_ACT_UNSPEC;
	if ((cfg->flags & NETLOCK_ALLOW_MARK) && skb->mark == cfg->mark)
		return TC_ACT_UNSPEC;
	/* Namespace scope: every IP packet; ARP and the like pass, so that neighbours are
	 * still known when the lock is lifted. */
	if (cfg->flags & NETLOCK_ALL_TRAFFIC) {
		if (skb->protocol == bpf_htons(ETH_P_IP) || skb->protocol == bpf_htons(ETH_P_IPV6))
			return drop(ingress ? 0 : 1);
		return TC_ACT_UNSPEC;
	}
	if (tuple_of(skb, &t, ingress))
		return TC_ACT_UNSPEC;
	if (bpf_map_lookup_elem(&tuples, &t))
		return drop(ingress ? 0 : 1);
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int netlock_ingress(struct __sk_buff *skb)
{
	return classify(skb, 1);
}

SEC("classifier")
int netlock_egress(struct __sk_buff *skb)
{
	return classify(skb, 0);
}

char LICENSE[] SEC("license") = "GPL";
