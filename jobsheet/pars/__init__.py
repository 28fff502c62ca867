"""Pre-authenticated requests (PARs): read PARs, the bucket-write capability, download PARs."""
