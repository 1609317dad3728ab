package demo;

import jakarta.servlet.annotation.WebServlet;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;

/** GET /demo/health -> 200 {"status":"UP","sha":"<git sha this war was built from>"}. */
@WebServlet(urlPatterns = "/health")
public class HealthServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;
    private final transient BuildInfo info = BuildInfo.load();

    @Override
    protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        resp.setContentType("application/json;charset=UTF-8");
        resp.setHeader("Cache-Control", "no-store");
        resp.getWriter().print(info.healthJson());
    }
}
