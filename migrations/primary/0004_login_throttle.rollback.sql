DROP TABLE config.login_throttle;
