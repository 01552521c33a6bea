from mlplatform.cli.main import app

app()
