"""The fault agent: the one long-lived process inside the session's helper container.

It runs as `python3 -m dcfire_agent SESSION` (this package, copied into the helper image
under that name) through a single `docker exec` whose stdin and stdout are the control
channel, so a fire costs one round trip instead of one exec (~45 ms) per container.
Standard library only (Debian bookworm's Python 3.11), relative imports only; the helper
image adds e2fsprogs (mkfs.ext4), util-linux (nsenter) and iptables (the fallback cut).
The plugin imports `protocol` (and the unit tests the pure parts) from here too.

- `protocol`: the request and reply types of every operation, shared with the client.
- `agent`: the parts below, their journal, the dispatch, the dead-man switch;
  `__main__`: the main loop.
- `cuts` and `peers`: network cuts (one owned nftables table per target netns, iptables on
  old kernels) and a partition's peer cuts; `nft` builds their netlink batches, `netlink`
  encodes, reads acks and dumps addresses.
- `targets`: containers' processes pinned with pidfds and verified, their netns.
- `power`: SIGKILL through a pidfd. `pools` and `loops`: loop-backed storage pools, frozen
  with FIFREEZE. `reap`: a dead session's pools and leftover cuts.
- `journal`: every fault is journalled before it is applied, so a restarted agent adopts
  it and restore never depends on memory alone.
- `watchdog`: when the session's process dies, remove the whole session (or, when it keeps
  its system, stop at the undone faults); `janitor`: what its container runs to remove the
  session's containers, volumes and networks; `dockerapi`: the engine's API over its socket,
  found through dockerd's root in /proc; `procs`: pids, their start times, pids by name.
- `serve`: a reusable system's agent (`--serve`) stays after its owner, faults undone, and
  serves the next owner on a unix socket; `relay`: the script the next owner execs to reach
  it (or to start an agent when none runs).
- `dispatch`: `@handles(OP)` and the three ways a request fails; `kernel`: setns, mount.
"""
