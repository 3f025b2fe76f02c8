from zoostore.cli import run

run()
