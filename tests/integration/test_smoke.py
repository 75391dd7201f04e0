def test_module_loads(salt_call):
    ret = salt_call.run("shiv_app.list_releases", "hello")
    assert ret.returncode == 0, ret
    assert ret.data == []
