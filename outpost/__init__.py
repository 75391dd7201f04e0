"""outpost: build Shiv zipapps of Python web apps and release them to Salt minions."""
