// Multi-host tests use the product's network-namespace hosts (common/src/netns.ts, also behind phos demo).
export { hostsUnavailable, makeHosts, sweepStaleHosts, type Host, type Hosts } from '../../common/src/index.ts';
