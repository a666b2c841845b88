"""The verbs built on the core: each module is what one command does (export, extract, freeze, predict,
transfer, plot, import, init) or shows (report), with no click in it."""
