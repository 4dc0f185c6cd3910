package org.phee.engine;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * phee's engine: Operaton with its REST API over PostgreSQL. All behaviour comes from the
 * Operaton Spring Boot starter and application.yaml; processes are deployed over REST.
 */
@SpringBootApplication
public class Application {

  public static void main(String[] args) {
    SpringApplication.run(Application.class, args);
  }
}
