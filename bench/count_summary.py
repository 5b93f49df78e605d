#!/usr/bin/env python3
"""Prints the activity event count of a generated landing (GENERATED.json)."""
import json
import sys

print(json.load(open(sys.argv[1]))["counts"]["events"])
