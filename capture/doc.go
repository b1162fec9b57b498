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
// Keys valid for every source:
//
//	mode=continuous|trigger  default continuous. trigger: only the frame (or file)
//	                         after each trigger is emitted, with the trigger's part id
//	triggers=N               pending-trigger queue length (default 16)
//	retry=DURATION           first reconnect delay (default 500ms); it doubles per
//	                         failure, ±20% jitter ...
//	retrymax=DURATION        ... up to this cap (default 30s)
//
// Live sources (device, url, video):
//
//	fps=F                    expected frame rate (default: the file's rate for video,
//	                         30 for devices, 25 for streams)
//	timeout=DURATION|off     no-frame timeout after which the source is reported
//	                         offline and reopened (default max(10 frame intervals, 2s));
//	                         "off" for hardware-triggered cameras that are silent
//	                         between parts
//	loop=true                video only: reopen the file at its end (demos). Without
//	                         it the source stops (state stopped) at the end of the file.
//	pace=true                video only: play at the file's frame rate instead of as
//	                         fast as the daemon takes frames (always so in trigger mode)
//
// Folder sources:
//
//	after=keep|move:DIR|delete  what happens to a judged file (default keep). keep
//	                         records the file's key in an fsynced journal
//	                         (STATE/<name>.journal) so it is never judged twice,
//	                         also across restarts
//	state=DIR                journal folder (required with after=keep unless the
//	                         daemon supplies Config.StateDir)
//	rejected=DIR             where unreadable, corrupt, truncated or non-image files
//	                         go (default PATH/rejected)
//	settle=DURATION          stable-size poll interval (default 100ms)
//	polls=N                  consecutive polls with unchanged size and mtime before a
//	                         file counts as written (default 2)
//	incomplete=DURATION      grace for a file that is stable but truncated (no JPEG
//	                         EOI / PNG IEND, BMP/WebP shorter than its header says,
//	                         empty, all zeros), undecodable or unreadable: if it does
//	                         not change within this time (or was last modified longer
//	                         ago) it is rejected (default 10s)
//	rescan=DURATION          full rescan period, for shares (NFS/SMB) whose remote
//	                         writes raise no inotify events (default 2s)
//	ignore=GLOB|GLOB...      file names never read (default .*|*.tmp|*.part|~*)
//	part=REGEXP              part id from the file's base name: the group named
//	                         "part", else the first group, else the whole match
//	                         (default: the base name without its extension)
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
