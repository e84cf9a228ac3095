"""Finding peers: mDNS (zeroconf), bootstrap addresses and the signalling exchange."""
