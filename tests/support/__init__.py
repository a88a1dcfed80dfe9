"""Helpers shared by the test suites: real tools, real servers, no mocks."""
