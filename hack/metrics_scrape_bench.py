#!/usr/bin/env python3
"""Scrape-latency load tool: N concurrent scrapers GET /metrics for D seconds
(each over its own keep-alive connection) and report p50/p99/max latency.
Usage: metrics_scrape_bench.py URL [--scrapers 8] [--seconds 10]"""
import argparse
import http.client
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--scrapers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    lat, lock, errors = [], threading.Lock(), [0]
    end = time.monotonic() + a.seconds

    def scrape():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        mine = []
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                conn.request("GET", u.path or "/metrics")
                r = conn.getresponse()
                body = r.read()
                ok = r.status == 200 and b"gdp_gpu_temperature_celsius" in body
            except OSError:
                ok = False
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
            mine.append(time.perf_counter() - t0)
            if not ok:
                with lock:
                    errors[0] += 1
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=scrape) for _ in range(a.scrapers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    print(f"scrapes {len(lat)} errors {errors[0]} scrapers {a.scrapers} seconds {a.seconds}")
    print(f"latency_ms p50 {pct(0.50):.2f} p99 {pct(0.99):.2f} max {lat[-1] * 1000:.2f}")
    return 1 if errors[0] or not lat else 0


if __name__ == "__main__":
    raise SystemExit(main())
