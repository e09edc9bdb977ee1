package fusefs

import "github.com/sirupsen/logrus"

// Log receives the package's diagnostics (reads that fail, mounts).
var Log logrus.FieldLogger = logrus.StandardLogger()

func logf(format string, args ...any) { Log.Warnf(format, args...) }
