// Package dhcp configures the restore agent's network with DHCPv4, the
// way the agent starts on a machine it knows nothing about: some NICs,
// some cables, a DHCP server somewhere.
//
// [Configure] takes the links to try — the one Config.Iface names
// (thaw.iface=), or else every link with an Ethernet address except
// loopback, ifb and dummy links, and links enslaved to a bridge or bond —
// brings each up and
// waits up to Config.LinkWait for its carrier. Every link that gets
// carrier runs DHCP at once, with github.com/insomniacslk/dhcp's nclient4
// on a raw socket (no address needed): DISCOVER, OFFER, REQUEST, ACK,
// bounded by Config.Timeout per attempt, with up to Config.Retries more
// attempts after a backoff of about 1, 2, 4, 8, 8… seconds (±20%). The
// first link to get a lease wins; the others stop. The agent sends
// vendor class "thaw" (option 60), which a DHCP server can match.
//
// The winning link then gets:
//
//   - the leased address with the subnet mask's prefix (/32 when the
//     server sends no mask), without a lifetime: nothing renews the lease,
//     and the address stays for as long as the agent runs, so give the
//     agent's network leases longer than a restore takes;
//   - the classless static routes (option 121) if the server sent them,
//     else a default route through the first router (option 3); a gateway
//     outside the leased subnet is added "onlink";
//   - the interface MTU (option 26), if given and the link accepts it;
//   - when the lease names DNS servers, a resolv.conf (Config.ResolvConf,
//     /etc/resolv.conf by default) with the domain, the search list and
//     the servers.
//
// The [Lease] says what was configured, from which server, and how long
// it took. Cancelling the context stops every link's wait and attempt.
//
// Failures are typed: [ErrNoLink] (no link at all, or none of that name:
// usually a NIC without a driver in the agent), and otherwise an [*Error]
// with one [*LinkError] per link tried, each matching [ErrNoCarrier],
// [ErrNoAnswer] (with the number of attempts and their timeout),
// [ErrRefused] (a NAK) or [ErrBadLease]. Its message names every link,
// its MAC address and what went wrong on it.
//
// Configure needs CAP_NET_ADMIN and CAP_NET_RAW, as the agent (init, root)
// has. It touches only the winning link's addresses and routes and the
// resolv.conf; it brings the other links up and leaves them up.
package dhcp
