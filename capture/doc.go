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
// Only regular files directly in the folder are considered. A file is judged once,
// after it is completely written: its size and mtime must stay unchanged over `polls`
// polls `settle` apart, and JPEG/PNG/BMP/WebP files must also be complete by their
// format (OpenCV decodes a truncated JPEG into a partly grey image without an error,
// which would produce a wrong verdict). Files renamed into place are picked up (the
// rename raises a create event for the final name); temporary names are ignored.
// Files present at start are judged first, oldest mtime first (then by name).
// The frame's Key (hash of source name, file name, size and mtime) is stable, so a
// file judged again after a crash yields the same message id and is deduplicated
// downstream. After the daemon has made the verdict durable it calls Frame.Done,
// which moves, deletes or journals the file.
//
// A folder that vanishes makes the source offline; it comes back online when the
// folder returns. Bad files are counted (Status.BadFiles, Hooks.OnBadFile), logged
// with their name and moved to the rejected folder (journaled if they cannot be
// moved), so they are not retried forever.
//
// # Trigger mode
//
// Live sources keep reading (so the stream stays fresh) and emit only the first frame
// whose read began after a pending trigger, with the trigger's part id. Folder sources
// pair complete files and triggers first-in first-out, whichever arrives first (the
// camera's file may land before or after the PLC's message); files wait on disk for
// their trigger. Triggers beyond the queue length are refused (ErrTriggerQueueFull).
//
// # Frame flow
//
// Video files and triggered frames wait for the consumer; continuous live cameras
// drop frames the consumer is not ready for (Status.Dropped, Hooks.OnDrop), since a
// camera's buffered frames go stale. A live source that delivers no frame within its
// timeout (10 s for the first frame after opening, for key frames) is reported
// offline and reopened; a read stuck inside OpenCV is abandoned, not waited for.
package capture
