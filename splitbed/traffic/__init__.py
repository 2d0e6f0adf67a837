"""Traffic a split inference puts on the link, read from packet captures: TCP connections and their streams
(streams), and per-inference figures joined to the metrics records by stream offsets (inference).
docs/METRICS.md, "Added by the sweep: traffic"; docs/SWEEP.md, "Captures"."""
