// Package capture turns cameras into frames for the inspection daemon: live sources
// (a V4L2 device, an RTSP/HTTP stream, a video file) and folders that line cameras drop
// image files into. Each source runs on its own, reconnects itself with a capped,
// jittered exponential backoff, reports its state (Status) and can run in trigger mode,
// where only the frame after a PLC's trigger is emitted, carrying the trigger's part id.
//
// # Source specification (DIAGD_SOURCES)
//
// One string lists every source, entries separated by ';' (or newlines):
//
//	name=target[,key=value]...
//
// name: letters, digits, '_' and '-' (it appears in MQTT topics and metric labels).
// target, one of:
//
//	device:N            V4L2 device index N (/dev/videoN)
//	rtsp://... rtsps://... http://... https://...   a network stream (FFmpeg)
//	url:ANYTHING        any other string OpenCV's FFmpeg backend opens
//	video:PATH          a video file (demos, replays)
//	folder:PATH         a folder that cameras drop image files into
//
// A ',' ';' or '\' inside a target or value is written '\,' '\;' '\\' (percent-encoding
// works too inside URLs).
//
// The keys, where they apply, their defaults and meanings are the table sourceKeys
// (keys.go); README's table of source keys is checked against it.
//
// Example:
//
//	cam1=device:0,fps=30;line2=folder:/srv/drop,after=move:/srv/done,settle=200ms;demo=video:/opt/demo.avi,loop=true;gate=rtsp://10.0.0.5/stream,mode=trigger
//
// # Folder semantics
//
// Only files directly in the folder are considered; subfolders are left alone, and
// symbolic links and special files are rejected unopened (symlinks=true follows links).
// A file is judged once, after it is completely written: renamed into the folder or
// closed after writing (inotify's IN_MOVED_TO, IN_CLOSE_WRITE), or otherwise unchanged
// in size and mtime over `polls` polls `settle` apart; and complete by its own format
// (imageio.Probe: OpenCV decodes a truncated JPEG into a partly grey image without an
// error, which would produce a wrong verdict). A truncated file gets the `incomplete`
// grace; a corrupt, oversized (maxbytes, maxpixels) or unsupported one is rejected at
// once. Files present at start are judged first, oldest mtime first (then by name).
// The frame's Key (a hash of source name, file name, size, mtime and content) is
// stable, so a file judged again after a crash yields the same message id and is
// deduplicated downstream, while a new image under an old name, size and mtime gets its
// own. After the daemon has made the verdict durable it calls Frame.Done, which moves,
// deletes or journals the file.
//
// A folder that vanishes makes the source offline; it comes back online when the
// folder returns. Bad files are moved to the rejected folder (journaled if they cannot
// be moved), so they are not retried forever, counted (Status.BadFiles), logged once
// and reported (Hooks.OnBadFile).
//
// # Trigger mode
//
// Every accepted trigger yields exactly one frame with its part id. Live sources keep
// reading (so the stream stays fresh) and emit the first frame whose read began after
// a pending trigger. Folder sources pair complete files and triggers first-in
// first-out, whichever arrives first, in the order the files were written; a bad file
// takes its trigger too, as a frame with Err and an empty Mat. A trigger that finds no
// frame within triggerttl becomes such a frame as well (ErrTriggerExpired); a file that
// waited longer than triggerttl for a trigger is rejected. TriggerAt refuses a trigger
// sent longer ago than triggerttl, and triggers beyond the queue length are refused
// (ErrTriggerQueueFull).
//
// # Frame flow
//
// Video files and triggered frames wait for the consumer; continuous live cameras
// drop frames the consumer is not ready for (Status.Dropped, Hooks.OnDrop), since a
// camera's buffered frames go stale. A live source that delivers no frame within its
// timeout (10 s for the first frame after opening, for key frames) is reported
// offline and reopened; a read stuck inside OpenCV is abandoned, not waited for.
package capture
