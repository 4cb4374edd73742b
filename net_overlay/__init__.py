"""Overlay networking (IPAM, VXLAN, DNS, nftables VIPs). Not built yet."""
