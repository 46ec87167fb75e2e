"""What every stage shares and no stage owns: atomic writes, progress, `.npy` streams,
local-or-URL inputs, the pure-numpy metrics and paired intervals, the verbs' output."""
