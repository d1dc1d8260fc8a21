from cpak_cli.cli import app

app(prog_name="cpak")
