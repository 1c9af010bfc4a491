#!/usr/bin/env python3
"""Scrape an HTTP endpoint N times over one keep-alive connection and print
p50/p99 latency in milliseconds: scrape.py HOST:PORT PATH N"""
import http.client
import sys
import time

host, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
h, p = host.rsplit(":", 1)
conn = http.client.HTTPConnection(h, int(p), timeout=30)
lat = []
size = 0
for _ in range(n):
    t0 = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    lat.append((time.perf_counter() - t0) * 1000.0)
    size = len(body)
    if r.status != 200:
        sys.exit(f"{host}{path}: HTTP {r.status}")
lat.sort()
print(f"p50_ms={lat[len(lat)//2]:.3f} p99_ms={lat[int(len(lat)*0.99)]:.3f} bytes={size}")
