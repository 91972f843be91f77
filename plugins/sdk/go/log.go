package sluice

// Level is the severity of a log message.
type Level int32

// Log levels, as the host's sluice.log import numbers them.
const (
	LevelDebug Level = 0
	LevelInfo  Level = 1
	LevelWarn  Level = 2
	LevelError Level = 3
)

// Log writes msg to Sluice's log, tagged with the module. Logging every
// record is slow and floods the log; log what is exceptional.
func Log(level Level, msg string) { hostLog(level, msg) }
