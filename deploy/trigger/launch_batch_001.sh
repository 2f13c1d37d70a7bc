#!/usr/bin/env sh
# Kept for existing cron lines: launch_batch_001.py does the work (see its header).
exec python3 "$(dirname "$0")/launch_batch_001.py" "$@"
