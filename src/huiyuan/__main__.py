from huiyuan.cli.main import app

app()
