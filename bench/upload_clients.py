"""The load for the memory benchmark, as its own process: N clients at once, each POSTing one report
with the given photos (multipart, streamed from disk), `--rounds` times. Prints one JSON line.

    .venv/bin/python bench/upload_clients.py URL API_KEY --clients 20 --rounds 2 PHOTO [PHOTO ...]
"""

import argparse
import json
import threading
import time
from collections import Counter

import httpx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("api_key")
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    statuses: Counter = Counter()
    barrier = threading.Barrier(args.clients)

    def client(number: int) -> None:
        with httpx.Client(base_url=args.url, timeout=120) as http:
            for round_ in range(args.rounds):
                barrier.wait()  # every client uploads at the same moment
                files = [("photos", (f"photo-{index}.jpg", open(path, "rb"), "image/jpeg"))
                         for index, path in enumerate(args.photos)]
                data = {"description": f"Ngập sâu, ảnh chụp hiện trường số {number}-{round_} gửi kèm",
                        "lat": "10.7731", "lon": "106.7030"}
                try:
                    response = http.post("/v1/reports", data=data, files=files, headers={"X-API-Key": args.api_key})
                    statuses[str(response.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                finally:
                    for _, (_, handle, _) in files:
                        handle.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(number,)) for number in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"statuses": statuses, "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    main()
