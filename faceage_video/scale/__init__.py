"""Scale-out on Ray: one long clip, or many shots, split at keyframes and aged by warm actors.

Modules: `plan` (options, segments found by seeking), `worker` (the actor that ages one segment), `pool`
(actors, scheduling, retries, stitching; `age_video_ray`), `batch` (manifests, status file, resume).

    driver                                           Ray actors (one per GPU, or per `cpus_per_actor` CPUs)
    ──────                                           ──────────
    probe + keyframe seeks (packets only) ─ plan ─►  segment k: seek to the keyframe before its warm-up,
                                                     decode → analyse → generate → smooth → blend, the
                                                     warm-up frames dropped, → encode (video only) to a file
    one progress bar ◄──── frames done ──────────── (a tiny progress actor collects the counts)
    stitch: remux every segment's packets ◄─ path ── (or the file's bytes as an object ref)
            + the source audio, packet for packet

Segments. The driver seeks (packet level, nothing decoded) to about every `segment_seconds` and takes the
nearest keyframe, so a segment starts where the decoder can start. Segment k holds the frames whose pts lie in
[keyframe_k, keyframe_k+1); each worker decodes from a little earlier, `warmup_frames` frames that go through
landmarks, tracking, scene-cut detection and temporal smoothing but are not written, so a seam neither jumps
nor flickers (the state of a fresh segment converges to the single-process state within a few frames).

Encoded once, stitched without re-encoding. Each segment is encoded by the same `VideoWriter` as a
single-process run, with the same codec settings and the input's own pts, into the output's container;
every segment therefore starts with a keyframe and carries the same stream headers, and the driver copies
the packets into the output in order (a remux). The audio is copied once, from the source, packet for packet,
by the writer's own remuxer, so frame count, pts and audio equal a single-process run's; pixels differ only
where the encoder placed its keyframes (codec noise).

Faults. An actor that dies (process killed, node lost) fails only its own segment; the driver starts a
replacement actor and runs the segment again, at most `max_retries` times. An error raised by the pipeline
itself (a bad input, a bad option) is not retried: it fails its shot, and in a batch the other shots go on.

Data movement. Frames never leave a worker: segments travel as file paths on storage every node sees
(`transport="path"`), or as the encoded bytes in Ray's object store (`transport="bytes"`). Workers read the
input themselves, so it must be visible to every node (shared storage, or a URL with `allow_protocols`).
"""
