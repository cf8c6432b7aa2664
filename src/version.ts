/** The od release this build is; reported by daemons and shown by `od --version`. */
export const VERSION = "0.1.0";
