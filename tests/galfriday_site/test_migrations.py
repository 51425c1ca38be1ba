from tests.conftest import run_manage


def test_makemigrations_check_is_clean(embedded_env: dict[str, str]) -> None:
    result = run_manage("makemigrations", "--check", "--dry-run", env=embedded_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout
